/*
 * fastify-websocket-stabilizer/testing: WebSocket clients for an app's own tests, through
 * `app.injectWS` (no port) or a real socket, with a buffered inbox, bounded waits and
 * teardown bound to the test. No test framework is imported: pass your `t`.
 */
export { wsTesting, WsTesting } from './factory.ts'
export type { ConnectOptions, TeardownTarget, Transport, WsTestingOptions } from './factory.ts'
export { WsTestClient } from './client.ts'
export type { AwaitOptions, Envelope, MessageOfType, MessageType, TestClientSettings } from './client.ts'
export type { CloseInfo, Frame } from './inbox.ts'
export type { WelcomeFrame } from '../client/frames.ts'
export {
  TestingTimeoutError, TestingClosedError, TestingNotOpenError, TestingCloseCodeError,
  TestingUpgradeRefusedError, TestingNotJsonError, TestingNotListeningError
} from '../errors.ts'
