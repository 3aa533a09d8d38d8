/*
 * The README's code blocks, as the consumer suite runs them. A ```js (or ```ts) block is a
 * complete program unless the line before its fence is a marker, an HTML comment that does
 * not render:
 *
 *   <!-- readme-test: fragment <harness> -->       runs inside test/consumer/harnesses/<harness>.mjs,
 *                                                  which gives it what it uses (an `app`, a `clientId`…)
 *   <!-- readme-test: file <name> <command…> -->   saved as <name>, run with the command the README gives
 *   <!-- readme-test: server <client-harness> -->  a program that serves until stopped: the client
 *                                                  harness runs against it, then it is stopped
 *   <!-- readme-test: skip <reason> -->            not run here, for the reason given
 */

export const LANGUAGES = ['js', 'javascript', 'mjs', 'ts', 'typescript']

export type Kind = 'program' | 'fragment' | 'file' | 'server' | 'skip'

export interface Block {
  /** 1-based line of the opening fence. */
  line: number
  lang: string
  code: string
  kind: Kind
  /** What the marker says after the kind. */
  args: string[]
}

/** A fence; its language is the first word after the backticks (```js title=… is a js block). */
const FENCE = /^```\s*(\S*).*$/
const MARKER = /^<!--\s*readme-test:\s*(.*?)\s*-->$/
const KINDS: Record<string, number> = { fragment: 1, file: 2, server: 1, skip: 1 }

export interface Extraction {
  blocks: Block[]
  /** Markers that are malformed or mark no js/ts block. */
  problems: string[]
}

export function extractBlocks (markdown: string): Extraction {
  const lines = markdown.split('\n')
  const blocks: Block[] = []
  const problems: string[] = []
  let marker: { line: number, text: string } | undefined
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]
    const fence = FENCE.exec(line)
    if (fence === null) {
      const comment = /^<!--\s*readme-test/.test(line.trim())
      const found = comment ? MARKER.exec(line.trim()) : null
      if (comment && found === null) problems.push(`line ${i + 1}: a readme-test marker must be one whole line \`<!-- readme-test: … -->\``)
      if (found !== null) {
        if (marker !== undefined) problems.push(`line ${marker.line}: the marker is followed by another, not by a code block`)
        marker = { line: i + 1, text: found[1] }
      } else if (line.trim() !== '' && marker !== undefined) {
        problems.push(`line ${marker.line}: the marker is not right before a code block`)
        marker = undefined
      }
      continue
    }
    const lang = fence[1]
    const start = i
    const body: string[] = []
    for (i++; i < lines.length && lines[i].trim() !== '```'; i++) body.push(lines[i])
    if (i === lines.length) problems.push(`line ${start + 1}: the code block is never closed`)
    if (!LANGUAGES.includes(lang)) {
      if (marker !== undefined) problems.push(`line ${marker.line}: the marker is on a \`${lang}\` block, not a js/ts one`)
      marker = undefined
      continue
    }
    let kind: Kind = 'program'
    let args: string[] = []
    if (marker !== undefined) {
      const [name, ...rest] = marker.text.split(/\s+/)
      if (KINDS[name] === undefined || rest.length < KINDS[name]) {
        problems.push(`line ${marker.line}: \`${marker.text}\` is not one of fragment <harness>, file <name> <command…>, server <client-harness>, skip <reason>`)
      } else {
        kind = name as Kind
        args = rest
      }
      marker = undefined
    }
    blocks.push({ line: start + 1, lang, code: body.join('\n') + '\n', kind, args })
  }
  if (marker !== undefined) problems.push(`line ${marker.line}: the marker marks no code block`)
  return { blocks, problems }
}

/** The js/ts fences of the README, counted on their own, more loosely than extractBlocks reads them (any case, anything after). */
export function countCodeFences (markdown: string): number {
  const pattern = new RegExp(`^\`\`\`\\s*(${LANGUAGES.join('|')})\\b`, 'gim')
  return markdown.match(pattern)?.length ?? 0
}

/**
 * HTML comments outside code blocks that would render: a `-->` with no `<!--` before it
 * (its text shows, a heading's `#` included), or a `<!--` never closed (it hides the rest).
 */
export function unbalancedComments (markdown: string): string[] {
  const problems: string[] = []
  let open: number | undefined
  let inCode = false
  markdown.split('\n').forEach((line, index) => {
    if (FENCE.test(line)) {
      inCode = !inCode
      return
    }
    if (inCode) return
    for (const token of line.match(/<!--|-->/g) ?? []) {
      if (token === '<!--') {
        if (open !== undefined) problems.push(`line ${index + 1}: \`<!--\` inside the comment opened on line ${open}`)
        open = index + 1
      } else if (open === undefined) {
        problems.push(`line ${index + 1}: \`-->\` closes no comment: the text before it renders`)
      } else {
        open = undefined
      }
    }
  })
  if (open !== undefined) problems.push(`line ${open}: \`<!--\` is never closed`)
  return problems
}
