/**
 * host:port values of the configuration (admin.listen): parsing, and whether an address is
 * reachable only from this machine (loopback), which decides the admin server's warning and the
 * production rule for admin.token.
 */
import net from 'node:net';
import { InvalidArgumentError } from '../errors.js';

/**
 * `127.0.0.1:9090` -> { host: '127.0.0.1', port: 9090 }; `[::1]:9090` -> host '::1';
 * `:9090` (no host) means every IPv4 interface: host '0.0.0.0', as Node binds it.
 */
export function parseHostPort(value: string): { host: string; port: number } {
  const match = /^(.*):(\d+)$/.exec(value);
  if (!match) throw new InvalidArgumentError(`expected host:port, got ${JSON.stringify(value)}`);
  return { host: match[1]!.replace(/^\[(.*)\]$/, '$1') || '0.0.0.0', port: Number(match[2]) };
}

const loopback = new net.BlockList();
loopback.addSubnet('127.0.0.0', 8, 'ipv4');
loopback.addAddress('::1', 'ipv6');

/**
 * True for addresses only this machine reaches: 127.0.0.0/8, ::1 (also IPv4-mapped) and the name
 * localhost. Anything else is taken as reachable from elsewhere: 0.0.0.0 and :: (every
 * interface), other addresses, and host names, which may resolve to anything.
 */
export function isLoopbackHost(host: string): boolean {
  if (host.toLowerCase() === 'localhost') return true;
  const family = net.isIP(host);
  if (family === 0) return false;
  return loopback.check(host, family === 6 ? 'ipv6' : 'ipv4');
}
