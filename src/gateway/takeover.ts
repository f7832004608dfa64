/**
 * A session resumed at another gateway (docs/client-protocol.md): the new gateway takes it over
 * from the old one through the bus, in two asks of the old gateway.
 *
 *   new gateway                                   old gateway (owner of the token's clientId)
 *   takeover [id, token, identity, seq, newId] ->  checks token, identity and seq; freezes the
 *                                              <-  session (its socket cut); uid, groups, session
 *   binds the uid and groups (confirmed), and
 *   holds the live pushes for the new client
 *   release [id, newId]                        ->  hands over the messages kept after seq, its
 *                                              <-  last sequence number per bus sender, and
 *                                                  forgets the session without onClose
 *   delivers the handed messages, then the held ones that the old gateway had not got (a held
 *   push whose bus sequence number is at most the old gateway's last one from that sender was
 *   routed to the old gateway too, which kept it), then the live stream; onResume.
 *
 * Pushes addressed to the old clientId afterwards are forwarded to the new one for the resume
 * window. A freeze that no release follows within HANDOVER_TIMEOUT_MS (10 s) ends: the session
 * is suspended again.
 */
import type { Socket } from 'node:net';
import type { WebSocket } from 'ws';
import type { Logger } from 'pino';
import { Op, type ClientReply, type Command, type Payload, type Session } from '../protocol/commands.js';
import { newResumeToken, sameToken, type NotResumedReason } from '../protocol/client-protocol.js';
import { ownerOf } from '../protocol/identity.js';
import { errorMessage } from '../errors.js';
import type { Client, ClientRequestInfo } from './client.js';
import { OutgoingMessage } from './outgoing-message.js';
import { ResumeState } from './resume-state.js';
import type { ResumableSessions, SessionHost } from './resumable.js';

const HANDOVER_TIMEOUT_MS = 10000;
/** A moved session may move again before its client comes back: hops followed at most. */
const MAX_HOPS = 3;

/** What a takeover needs of the cluster (bound in the container: requests and the bus). */
export interface SessionCluster {
  /** Asks the gateway `owner`; rejects when it does not answer (unreachable, timeout). */
  ask(owner: string, q: 'takeover' | 'release', a: string[]): Promise<unknown>;
  /** Publishes a command (a push or reply forwarded to a session's new clientId). */
  publish(cmd: Command): Promise<void>;
  /** The last bus sequence number this node applied from each sender. */
  lastSeqs(): Record<string, number>;
}

interface TakeoverAnswer {
  ok: boolean;
  reason?: NotResumedReason | 'moved';
  to?: string;
  u?: string | null;
  g?: string[];
  s?: Session;
  sv?: number;
  root?: string;
}

interface ReleaseMeta {
  ok: boolean;
  u: string | null;
  g: string[];
  s: Session;
  sv: number;
  /** the client's messages the old gateway received */
  rc: number;
  /** last sequence number applied per bus sender */
  ls: Record<string, number>;
}

/** A kept message on its way to the new gateway: data, control (1) or not, bus sender and sequence. */
type HandedMessage = [Payload, number, string, number];

interface Forward {
  to: string;
  token: string | null;
  previousToken: string | null;
  identity: string | null;
  until: number;
}

export class Takeover {
  /** old clientId -> where its session went, for the resume window */
  private readonly forwards = new Map<string, Forward>();

  constructor(
    private readonly sessions: ResumableSessions,
    private readonly host: SessionHost,
    private readonly cluster: SessionCluster,
    private readonly log: Logger,
  ) {}

  // ---- the new gateway ------------------------------------------------------------------

  async resumeElsewhere(
    ws: WebSocket,
    socket: Socket,
    request: ClientRequestInfo,
    identity: string | null,
    oldId: string,
    token: string,
    seq: number,
  ): Promise<void> {
    const client = this.host.newWsClient(socket, ws, request);
    // Nothing reaches the socket before the welcome: what comes meanwhile (a push to all) is held.
    const resume = new ResumeState(this.sessions.options.resumeBufferSize, identity, client.id, null);
    resume.holding = [];
    client.resume = resume;
    client.attached = false;
    let target = oldId;
    let answer: TakeoverAnswer | null = null;
    for (let hop = 0; hop < MAX_HOPS; hop++) {
      answer = await this.ask(target, 'takeover', [target, token, identity ?? '', String(seq), client.id]);
      if (answer?.reason !== 'moved' || typeof answer.to !== 'string') break;
      target = answer.to;
    }
    if (answer === null || !answer.ok) {
      const reason = answer?.reason === undefined || answer.reason === 'moved' ? 'unreachable' : answer.reason;
      this.sessions.freshFor(client, ws, identity, reason);
      return;
    }
    resume.root = answer.root ?? target;
    this.setState(client, answer.s ?? {}, answer.sv ?? 0);
    await this.bindAll(client, answer.u ?? null, answer.g ?? []);
    const released = (await this.ask(target, 'release', [target, client.id])) as unknown;
    const [meta, ...handed] = Array.isArray(released) ? (released as [ReleaseMeta, ...HandedMessage[]]) : [];
    if (meta === undefined || !meta.ok) {
      // The old gateway let the session go meanwhile: this one starts afresh.
      this.host.registry.unbindUid(client);
      for (const group of [...client.groups]) this.host.registry.leaveGroup(client, group);
      this.setState(client, {}, 0);
      this.sessions.freshFor(client, ws, identity, 'expired');
      return;
    }
    const held = resume.holding;
    resume.holding = null;
    resume.continueFrom(seq);
    resume.received = meta.rc;
    for (const [data, control, sender, bySeq] of handed) {
      resume.record({ message: new OutgoingMessage(data), control: control === 1, sender, seq: bySeq });
    }
    for (const kept of held) {
      // Routed to the old gateway as well, which kept it: a repeat.
      if (kept.seq > 0 && kept.seq <= (meta.ls[kept.sender] ?? 0)) continue;
      resume.record(kept);
    }
    // What changed between the two asks (a bind or session write applied at the old gateway).
    this.setState(client, meta.s, meta.sv);
    if (meta.u === null) this.host.registry.unbindUid(client);
    for (const group of [...client.groups]) if (!meta.g.includes(group)) this.host.registry.leaveGroup(client, group);
    void this.bindAll(client, meta.u, meta.g);
    resume.previousToken = token;
    resume.token = newResumeToken(client.id);
    const missed = resume.since(seq);
    if (missed === null || resume.overflowed) {
      // More came while the session moved than it may keep: it cannot be handed over whole, so
      // it ends here, and the connection starts a new session (not recovered).
      this.host.emitResume(client, target);
      this.host.end(client);
      this.sessions.fresh(ws, socket, request, identity, 'overflow');
      return;
    }
    this.sessions.attach(client, ws);
    this.sessions.welcome(client, { resumed: true, previousClientId: target });
    this.sessions.replay(client, missed);
    this.sessions.takenOver += 1;
    this.host.emitResume(client, target);
    client.request = null;
    // The link may have died while the session moved: it waits for its client as any other.
    if (ws.readyState !== ws.OPEN) {
      this.sessions.dropSocket(client);
      this.sessions.suspend(client);
    }
  }

  private async ask(target: string, q: 'takeover' | 'release', a: string[]): Promise<TakeoverAnswer | null> {
    try {
      return (await this.cluster.ask(ownerOf(target), q, a)) as TakeoverAnswer;
    } catch (err) {
      this.log.info({ clientId: target, q, err: errorMessage(err) }, 'the gateway of a session did not answer');
      return null;
    }
  }

  private setState(client: Client, session: Session, version: number): void {
    for (const key of Object.keys(client.session)) delete client.session[key];
    Object.assign(client.session, session);
    client.sessionVersion = version;
  }

  /** Binds the session's uid and groups here (resolves once the broker confirmed them). */
  private async bindAll(client: Client, uid: string | null, groups: string[]): Promise<void> {
    const binds = groups.map((group) => this.host.registry.joinGroup(client, group));
    if (uid !== null) binds.push(this.host.registry.bindUid(client, uid));
    const results = await Promise.allSettled(binds);
    for (const result of results) {
      if (result.status === 'rejected') {
        this.log.warn(
          { clientId: client.id, err: errorMessage(result.reason) },
          'a bind of a taken-over session failed',
        );
      }
    }
  }

  // ---- the old gateway --------------------------------------------------------------------

  /** takeover [clientId, token, identity, seq, newClientId]: freezes the session, answers its state. */
  answerTakeover(a: string[]): TakeoverAnswer {
    const [clientId = '', token = '', identityText = '', seqText = '0', newId = ''] = a;
    const identity = identityText === '' ? null : identityText;
    const client = this.host.registry.get(clientId);
    if (client === undefined) return this.moved(clientId, token, identity);
    const seq = Number(seqText);
    const verdict = Number.isSafeInteger(seq) ? this.sessions.check(client, token, identity, seq) : 'refused';
    if (verdict !== null) {
      if (verdict === 'overflow') this.host.end(client);
      return { ok: false, reason: verdict };
    }
    const resume = client.resume!;
    if (client.attached) this.sessions.dropSocket(client);
    clearTimeout(resume.expiry);
    resume.handingTo = newId;
    resume.handingSeq = seq;
    resume.expiry = setTimeout(() => {
      resume.handingTo = null;
      this.sessions.suspend(client);
    }, HANDOVER_TIMEOUT_MS);
    resume.expiry.unref();
    return {
      ok: true,
      u: client.uid,
      g: [...client.groups],
      s: client.session,
      sv: client.sessionVersion,
      root: resume.root,
    };
  }

  /** release [clientId, newClientId]: the kept messages go to the new gateway, the session ends here. */
  answerRelease(a: string[]): unknown[] {
    const [clientId = '', newId = ''] = a;
    const client = this.host.registry.get(clientId);
    const resume = client?.resume ?? null;
    const kept = resume !== null && resume.handingTo === newId ? resume.since(resume.handingSeq) : null;
    if (client === undefined || resume === null || kept === null) return [{ ok: false }];
    clearTimeout(resume.expiry);
    this.remember(clientId, {
      to: newId,
      token: resume.token,
      previousToken: resume.previousToken,
      identity: resume.identity,
      until: Date.now() + this.sessions.options.resumeWindow * 1000,
    });
    const meta: ReleaseMeta = {
      ok: true,
      u: client.uid,
      g: [...client.groups],
      s: client.session,
      sv: client.sessionVersion,
      rc: resume.received,
      ls: this.cluster.lastSeqs(),
    };
    // The session lives on at the new gateway: no onClose here.
    this.host.released(client);
    return [meta, ...kept.map((k): HandedMessage => [k.message.data, k.control ? 1 : 0, k.sender, k.seq])];
  }

  private moved(clientId: string, token: string, identity: string | null): TakeoverAnswer {
    const forward = this.forwards.get(clientId);
    if (forward === undefined || forward.until < Date.now()) return { ok: false, reason: 'expired' };
    const tokenOk = sameToken(forward.token, token) || sameToken(forward.previousToken, token);
    if (!tokenOk || forward.identity !== identity) return { ok: false, reason: 'refused' };
    return { ok: false, reason: 'moved', to: forward.to };
  }

  private remember(clientId: string, forward: Forward): void {
    const now = Date.now();
    for (const [id, old] of this.forwards) if (old.until < now) this.forwards.delete(id);
    this.forwards.set(clientId, forward);
  }

  // ---- forwarding ---------------------------------------------------------------------------

  /** Whether any session moved away recently (pushes to old clientIds are then looked up). */
  get forwarding(): boolean {
    return this.forwards.size > 0;
  }

  /** The clientId a moved session has now, or undefined. */
  movedTo(clientId: string): string | undefined {
    const forward = this.forwards.get(clientId);
    if (forward === undefined) return undefined;
    if (forward.until < Date.now()) {
      this.forwards.delete(clientId);
      return undefined;
    }
    return forward.to;
  }

  /** Sends to old clientIds go on to their sessions' new ones. */
  forwardSends(ids: string[], data: Payload): void {
    const to = ids.map((id) => this.movedTo(id)).filter((id): id is string => id !== undefined);
    if (to.length === 0) return;
    this.cluster.publish({ op: Op.SEND_TO_CLIENTS, c: to, d: data }).catch((err: unknown) => {
      this.log.warn({ err: errorMessage(err) }, 'a push to a moved session was not forwarded');
    });
  }

  /** A reply for a moved session goes on to its new clientId. */
  forwardReply(cmd: ClientReply): void {
    const to = this.movedTo(cmd.c);
    if (to === undefined) return;
    this.cluster.publish({ ...cmd, c: to }).catch((err: unknown) => {
      this.log.warn({ err: errorMessage(err) }, 'a reply to a moved session was not forwarded');
    });
  }
}
