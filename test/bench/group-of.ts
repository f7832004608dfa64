/**
 * Group j of client number n among `groups` groups: a fixed integer hash, the same in the bench
 * server (which joins the groups) and in the runner (which counts their members), so the members
 * of a group spread over the nodes as real users would.
 */
export function groupOf(n: number, j: number, groups: number): number {
  let h = Math.imul(n ^ 0x5bd1e995, 0x9e3779b1) ^ Math.imul(j + 1, 0x85ebca6b);
  h ^= h >>> 15;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 13;
  return (h >>> 0) % groups;
}
