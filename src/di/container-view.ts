/**
 * What a node and a publisher share: a built container and the parts every bus member has,
 * read from it on use.
 */
import type { Container, ServiceIdentifier } from 'inversify';
import { TOKENS } from './tokens.js';
import type { GatewayApi } from '../api/gateway-api.js';
import type { Bus } from '../transport/bus.js';
import type { Membership } from '../cluster/membership.js';

export class ContainerView {
  constructor(readonly container: Container) {}

  get api(): GatewayApi {
    return this.container.get(TOKENS.Api);
  }
  get bus(): Bus {
    return this.container.get(TOKENS.Bus);
  }
  get membership(): Membership {
    return this.container.get(TOKENS.Membership);
  }

  /** A part bound only for some roles; null where it is not. */
  protected optional<T>(token: ServiceIdentifier<T>): T | null {
    return this.container.get(token, { optional: true }) ?? null;
  }
}
