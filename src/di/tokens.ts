/**
 * Every injection token, in one place. An application can rebind any of them before the node
 * starts, e.g. `container.rebind(TOKENS.Transport).toConstantValue(myTransport)` or its own handler object.
 */
import type { ServiceIdentifier } from 'inversify';
import type { Logger } from 'pino';
import type { GatewireConfig } from '../config/load.js';
import type { Bus } from '../transport/bus.js';
import type { Transport } from '../transport/transport.js';
import type { LocalHub } from '../transport/local/local-hub.js';
import type { Membership } from '../cluster/membership.js';
import type { Requests } from '../cluster/requests.js';
import type { CommandDispatcher } from '../cluster/command-dispatcher.js';
import type { Directory } from '../cluster/directory.js';
import type { GatewayApi } from '../api/gateway-api.js';
import type { Gateway } from '../gateway/gateway.js';
import type { Authorizer } from '../gateway/listener.js';
import type { Worker } from '../worker/worker.js';
import type { EventHandler } from '../worker/handler.js';
import type { NodeIdentity } from '../cluster/node-identity.js';
import type { AmqpEventConsumer } from '../events/event-consumer.js';
import type { AmqpEventProducer } from '../events/event-producer.js';

export const TOKENS = {
  Config: Symbol.for('gatewire.Config') as ServiceIdentifier<GatewireConfig>,
  Logger: Symbol.for('gatewire.Logger') as ServiceIdentifier<Logger>,
  Identity: Symbol.for('gatewire.Identity') as ServiceIdentifier<NodeIdentity>,
  LocalHub: Symbol.for('gatewire.LocalHub') as ServiceIdentifier<LocalHub>,
  /** the broker adapter (transport.ts); rebind it to run the bus over another broker */
  Transport: Symbol.for('gatewire.Transport') as ServiceIdentifier<Transport>,
  Bus: Symbol.for('gatewire.Bus') as ServiceIdentifier<Bus>,
  Membership: Symbol.for('gatewire.Membership') as ServiceIdentifier<Membership>,
  Requests: Symbol.for('gatewire.Requests') as ServiceIdentifier<Requests>,
  CommandDispatcher: Symbol.for('gatewire.CommandDispatcher') as ServiceIdentifier<CommandDispatcher>,
  /** bound only on a node (not a publisher) in direct mode on a broker with bus.directory=auto */
  Directory: Symbol.for('gatewire.Directory') as ServiceIdentifier<Directory>,
  Api: Symbol.for('gatewire.Api') as ServiceIdentifier<GatewayApi>,
  /** bound only when the node has the gateway role */
  Gateway: Symbol.for('gatewire.Gateway') as ServiceIdentifier<Gateway>,
  /** null lets everyone in */
  Authorizer: Symbol.for('gatewire.Authorizer') as ServiceIdentifier<Authorizer | null>,
  /** bound only when the node has the worker role */
  Worker: Symbol.for('gatewire.Worker') as ServiceIdentifier<Worker>,
  /** a gateway-only node: publishes client events to the workers' queues */
  EventProducer: Symbol.for('gatewire.EventProducer') as ServiceIdentifier<AmqpEventProducer>,
  /** a worker-only node: consumes client events from the queues */
  EventConsumer: Symbol.for('gatewire.EventConsumer') as ServiceIdentifier<AmqpEventConsumer>,
  /** the Events handler; by default loaded from worker.handler */
  Handler: Symbol.for('gatewire.Handler') as ServiceIdentifier<EventHandler>,
} as const;
