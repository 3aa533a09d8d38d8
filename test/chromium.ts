import { existsSync } from 'node:fs'
import { chromium, type Browser } from 'playwright-core'

/*
 * The system's Chromium (Debian's package), driven by playwright-core, for the browser suite.
 */

export const CHROMIUM = '/usr/bin/chromium'

const INSTALL = 'apt-get install -y chromium'

// without the background-networking flags Chromium's own connections are refused on a closed network
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync']

/** True when Chromium is installed. Without it the browser suite is skipped, loudly; on CI it fails. */
export function chromiumAvailable (): boolean {
  const found = existsSync(CHROMIUM)
  if (!found) {
    const message = `chromium not found: the browser suite is SKIPPED. Install it with: ${INSTALL}`
    if (process.env.CI === 'true') throw new Error(`${message} (CI=true: failing instead)`)
    process.stderr.write(`\n*** ${message} ***\n\n`)
  }
  return found
}

/** A headless Chromium, closed when the test is done. */
export async function launchChromium (t: { teardown (fn: () => unknown): void }): Promise<Browser> {
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS })
  t.teardown(() => browser.close())
  return browser
}
