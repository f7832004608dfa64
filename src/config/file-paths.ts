/**
 * Paths in configuration files: a relative file or folder named in a config file (a `--config`
 * file or config/<NODE_ENV>.json) is taken from that file's folder, so a config file works
 * whatever the working directory. Paths from env or from code (LoadOptions.values) are not
 * touched: they resolve from the working directory where they are used.
 */
import path from 'node:path';

/** The keys that name a file or folder (an empty value means "none" and stays empty). */
export const PATH_KEYS = [
  'node.pidFile',
  'gateway.authorizer',
  'gateway.staticDir',
  'gateway.tls.key',
  'gateway.tls.cert',
  'worker.handler',
] as const;

/**
 * A copy of one config file's content whose relative path values are resolved from `dir` (the
 * file's folder). Anything else, including values of the wrong type (validation names them), is
 * kept as it is; the content itself is not changed.
 */
export function resolveFilePaths(content: Record<string, unknown>, dir: string): Record<string, unknown> {
  let result = content;
  for (const key of PATH_KEYS) {
    const parts = key.split('.');
    const value = parts.reduce<unknown>((node, part) => (isObject(node) ? node[part] : undefined), content);
    if (typeof value !== 'string' || value === '' || path.isAbsolute(value)) continue;
    result = withValue(result, parts, path.resolve(dir, value));
  }
  return result;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/** `node` with the value at `parts` replaced, copying only the objects on the way. */
function withValue(node: Record<string, unknown>, parts: string[], value: string): Record<string, unknown> {
  const [head, ...rest] = parts as [string, ...string[]];
  const child = node[head];
  return { ...node, [head]: rest.length === 0 ? value : withValue(isObject(child) ? child : {}, rest, value) };
}
