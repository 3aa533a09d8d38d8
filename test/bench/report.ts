/*
 * Medians, ratios and the table of `npm run bench`.
 */

/** One figure of one contender in one run. */
export type Samples = Record<string, Record<string, number[]>>

export interface Metric {
  key: string
  label: string
  unit: string
  digits: number
}

export function median (values: number[]): number {
  const sorted = values.filter(v => Number.isFinite(v)).sort((a, b) => a - b)
  if (sorted.length === 0) return NaN
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

export function add (samples: Samples, contender: string, key: string, value: number): void {
  samples[contender] ??= {}
  ;(samples[contender][key] ??= []).push(value)
}

function format (value: number, digits: number): string {
  if (!Number.isFinite(value)) return 'n/a'
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
}

/**
 * A markdown table: one row per metric, one column per contender, each cell the median
 * and its ratio to the median of `baseline` (in the same run), and to `second`'s when given.
 */
export function table (samples: Samples, contenders: string[], metrics: Metric[], baseline: string, second?: string): string {
  const lines = [
    `| metric | ${contenders.join(' | ')} |`,
    `| --- | ${contenders.map(() => '---:').join(' | ')} |`
  ]
  const ratio = (value: number, metric: string, name: string, base: string | undefined): string => {
    if (base === undefined || name === base) return ''
    const of = median(samples[base]?.[metric] ?? [])
    if (!Number.isFinite(of) || of === 0) return ''
    return `${format(value / of, 2)}x${second === undefined ? '' : ` ${base}`}`
  }
  for (const metric of metrics) {
    const cells = contenders.map(name => {
      const values = samples[name]?.[metric.key]
      if (values === undefined) return '—'
      const value = median(values)
      const ratios = [ratio(value, metric.key, name, baseline), ratio(value, metric.key, name, second)].filter(r => r !== '')
      return `${format(value, metric.digits)}${ratios.length > 0 ? ` (${ratios.join(', ')})` : ''}`
    })
    lines.push(`| ${metric.label} (${metric.unit}) | ${cells.join(' | ')} |`)
  }
  return lines.join('\n')
}

/** Medians of every figure, for the JSON file. */
export function medians (samples: Samples): Record<string, Record<string, { median: number, runs: number[] }>> {
  const out: Record<string, Record<string, { median: number, runs: number[] }>> = {}
  for (const [contender, figures] of Object.entries(samples)) {
    out[contender] = {}
    for (const [key, runs] of Object.entries(figures)) out[contender][key] = { median: median(runs), runs }
  }
  return out
}
