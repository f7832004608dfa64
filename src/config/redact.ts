/**
 * Broker URLs as they may be shown (errors, logs): the password is replaced, everything else
 * kept, so an operator sees which broker and which user without the secret.
 */

/**
 * `amqp://app:secret@mq:5672/vh` -> `amqp://app:***@mq:5672/vh`; an unparsable URL is not shown
 * at all. A list (the nodes of a cluster: comma-separated, or an array) keeps its entries, each
 * redacted: `amqp://a:***@mq1:5672,amqp://a:***@mq2:5672`.
 */
export function redactUrl(url: string | readonly string[]): string {
  const entries = (typeof url === 'string' ? url.split(',') : url.flatMap((entry) => entry.split(',')))
    .map((entry) => entry.trim())
    .filter((entry) => entry !== '');
  if (entries.length <= 1) return redactOne(entries[0] ?? (typeof url === 'string' ? url : ''));
  return entries.map(redactOne).join(',');
}

function redactOne(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return '(unparsable URL)';
  }
  // amqp:// and redis:// carry their credentials in the user info only.
  if (parsed.password !== '') parsed.password = '***';
  return parsed.toString();
}
