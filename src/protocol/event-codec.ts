/**
 * Client events as commands, so they travel in the bus envelope (signed like everything else)
 * when gateways and workers are separate processes.
 */
import { Op, type ClientEventCommand } from './commands.js';
import type { ClientEvent } from './client-event.js';
import { ErrorCodes, GatewireError } from '../errors.js';

export function eventToCommand(event: ClientEvent): ClientEventCommand {
  const cmd: ClientEventCommand = {
    op: Op.CLIENT_EVENT,
    e: event.type,
    c: event.clientId,
    gw: event.gateway,
    ra: event.remoteAddress,
    rp: event.remotePort,
    s: event.session,
    sv: event.sessionVersion,
  };
  if (event.type === 'message') cmd.d = event.data;
  if (event.type === 'websocketConnect') cmd.rq = event.request;
  if (event.type === 'resume') cmd.pc = event.previousClientId;
  if (event.type === 'request') {
    cmd.ri = event.requestId;
    cmd.d = event.data;
  }
  if (event.root !== undefined) cmd.rt = event.root;
  return cmd;
}

export function commandToEvent(cmd: ClientEventCommand): ClientEvent {
  if (cmd.op !== Op.CLIENT_EVENT || typeof cmd.c !== 'string' || typeof cmd.gw !== 'string') {
    throw new GatewireError(ErrorCodes.BUS_DECODE, 'not a client event');
  }
  const base = {
    clientId: cmd.c,
    gateway: cmd.gw,
    remoteAddress: String(cmd.ra ?? ''),
    remotePort: Number(cmd.rp) || 0,
    session: cmd.s && typeof cmd.s === 'object' ? cmd.s : {},
    sessionVersion: Number(cmd.sv) || 0,
    ...(typeof cmd.rt === 'string' ? { root: cmd.rt } : {}),
  };
  switch (cmd.e) {
    case 'connect':
    case 'close':
      return { ...base, type: cmd.e };
    case 'message':
      if (typeof cmd.d !== 'string' && !(cmd.d instanceof Uint8Array))
        throw new GatewireError(ErrorCodes.BUS_DECODE, 'message event without data');
      return { ...base, type: 'message', data: cmd.d };
    case 'websocketConnect':
      return { ...base, type: 'websocketConnect', request: cmd.rq ?? { url: '', headers: {}, query: {} } };
    case 'resume':
      if (typeof cmd.pc !== 'string') throw new GatewireError(ErrorCodes.BUS_DECODE, 'resume event without pc');
      return { ...base, type: 'resume', previousClientId: cmd.pc };
    case 'request':
      if (typeof cmd.ri !== 'string' && typeof cmd.ri !== 'number')
        throw new GatewireError(ErrorCodes.BUS_DECODE, 'request event without ri');
      if (typeof cmd.d !== 'string' && !(cmd.d instanceof Uint8Array))
        throw new GatewireError(ErrorCodes.BUS_DECODE, 'request event without data');
      return { ...base, type: 'request', requestId: cmd.ri, data: cmd.d };
    default:
      throw new GatewireError(ErrorCodes.BUS_DECODE, `unknown client event ${String(cmd.e)}`);
  }
}
