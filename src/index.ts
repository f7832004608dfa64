/**
 * gatewire: gateways that hold WebSocket and TCP connections, workers that run business code,
 * and one push API, scaled out over RabbitMQ or Redis.
 */
export { createNode, GatewireNode, type NodeOptions } from './node.js';
export { createPublisher, Publisher } from './publisher.js';
export { GatewayApi } from './api/gateway-api.js';
export { loadConfig, describeConfig, type GatewireConfig, type ConfigInput, type LoadOptions } from './config/load.js';
export { buildContainer } from './di/container.js';
export { TOKENS } from './di/tokens.js';
export { Bus, type BusOptions, type BusStats } from './transport/bus.js';
export type { Transport, TransportHooks, OutgoingBatch, Presence } from './transport/transport.js';
export { LocalTransport } from './transport/local/local-transport.js';
export { LocalHub } from './transport/local/local-hub.js';
export { Op, type Command, type Payload, type Session } from './protocol/commands.js';
export { encodeEnvelope, decodeEnvelope, WIRE_VERSION } from './protocol/envelope.js';
export type { EventHandler, EventContext, WorkerContext } from './worker/handler.js';
export type { Authorizer, AuthorizationRequest } from './gateway/listener.js';
export { ErrorCodes, GatewireError, InvalidArgumentError } from './errors.js';
