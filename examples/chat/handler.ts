/**
 * The classic chat room: everyone hears everyone.
 *   connect: "Hello <clientId>" to the newcomer, "<clientId> login" to all
 *   message: "<clientId> said <message>" to all
 *   close:   "<clientId> logout" to all
 *   resume:  "<previous clientId> is now <clientId>" to all
 *
 * The page (public/index.html) uses the client library, whose session survives a network drop:
 * a resume at the same gateway keeps the clientId and the handler sees nothing (no logout, no
 * login; the page gets the lines it missed). A resume at another gateway (a cluster, a gateway
 * that shut down) gives the client a new clientId: onResume tells everyone, so that its next
 * lines ("<clientId> said …") can be told apart from a newcomer's. Raw WebSocket and TCP clients
 * have no sessions: a drop is a logout.
 */
import type { EventHandler } from '../../src/index.js';

const chat: EventHandler = {
  async onConnect(clientId, { gateway }) {
    await gateway.sendToClient(clientId, `Hello ${clientId}`);
    await gateway.sendToAll(`${clientId} login`);
  },
  async onMessage(clientId, message, { gateway }) {
    const text = typeof message === 'string' ? message : Buffer.from(message).toString('utf8');
    await gateway.sendToAll(`${clientId} said ${text}`);
  },
  async onResume(clientId, { previousClientId }, { gateway }) {
    await gateway.sendToAll(`${previousClientId} is now ${clientId}`);
  },
  async onClose(clientId, { gateway }) {
    await gateway.sendToAll(`${clientId} logout`);
  },
};

export default chat;
