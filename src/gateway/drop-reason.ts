/**
 * Why the gateway disconnects a client: the `reason` label of gatewire_drops_total, and the
 * stable code (errors.ts) logged with the disconnect.
 */
import { ErrorCodes, type ErrorCode } from '../errors.js';

export const DropReason = {
  MAX_PAYLOAD: 'max_payload',
  PROTOCOL_ERROR: 'protocol_error',
  SEND_BUFFER: 'send_buffer',
  RATE_LIMIT: 'rate_limit',
  HEARTBEAT: 'heartbeat',
} as const;

export type DropReason = (typeof DropReason)[keyof typeof DropReason];

export const DROP_CODES: Readonly<Record<DropReason, ErrorCode>> = {
  max_payload: ErrorCodes.PAYLOAD_TOO_LARGE,
  protocol_error: ErrorCodes.PROTOCOL,
  send_buffer: ErrorCodes.SEND_BUFFER_FULL,
  rate_limit: ErrorCodes.RATE_LIMITED,
  heartbeat: ErrorCodes.HEARTBEAT_TIMEOUT,
};
