/**
 * The classic chat room: everyone hears everyone.
 *   connect: "Hello <clientId>" to the newcomer, "<clientId> login" to all
 *   message: "<clientId> said <message>" to all
 *   close:   "<clientId> logout" to all
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
  async onClose(clientId, { gateway }) {
    await gateway.sendToAll(`${clientId} logout`);
  },
};

export default chat;
