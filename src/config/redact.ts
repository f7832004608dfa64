/**
 * Broker URLs as they may be shown (errors, logs): the password is replaced, everything else
 * kept, so an operator sees which broker and which user without the secret.
 */

/** `amqp://app:secret@mq:5672/vh` -> `amqp://app:***@mq:5672/vh`; an unparsable URL is not shown at all. */
export function redactUrl(url: string): string {
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
