/*
 * fastify-websocket-stabilizer/testing: WebSocket clients for an app's own tests, through
 * `app.injectWS` (no port) or a real socket, with a buffered inbox, bounded waits and
 * teardown bound to the test. No test framework is imported: pass your `t`.
 */
export { wsTesting, WsTesting } from './testing/factory.ts'
export type { ConnectOptions, TeardownTarget, Transport, WsTestingOptions } from './testing/factory.ts'
export { WsTestClient } from './testing/client.ts'
export type { AwaitOptions, Envelope, MessageOfType, MessageType, TestClientSettings } from './testing/client.ts'
export type { CloseInfo, Frame } from './testing/inbox.ts'
export type { WelcomeFrame } from './client/frames.ts'
export {
  TestingTimeoutError, TestingClosedError, TestingNotOpenError, TestingCloseCodeError,
  TestingUpgradeRefusedError, TestingNotJsonError, TestingNotListeningError
} from './errors.ts'
