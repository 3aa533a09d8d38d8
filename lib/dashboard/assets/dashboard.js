/* global document, location, WebSocket, fetch, setTimeout, clearTimeout, devicePixelRatio, getComputedStyle */
/*
 * The dashboard page: plain JavaScript, no build step, no library. It gets a ticket from
 * `<base>/ticket` (the app's authorize says whether it may), opens `<base>/live` with it, and
 * draws what each tick brings: the totals, the plot, the rooms, the instances, and the page
 * of the connection table it asked for (the server filters and pages).
 */

const base = document.documentElement.dataset.base
const $ = (selector) => document.querySelector(selector)
const el = (tag, text, className) => {
  const node = document.createElement(tag)
  if (text !== undefined) node.textContent = String(text)
  if (className !== undefined) node.className = className
  return node
}

const state = {
  socket: undefined,
  history: [],
  historySize: 300,
  readOnly: true,
  query: { search: '', field: 'any', offset: 0, limit: 25 },
  total: 0,
  nextId: 1,
  retry: 500,
  last: undefined,
  presence: undefined
}

const number = (n) => n === undefined || n === null ? '–' : Number(n).toLocaleString('en-US', { maximumFractionDigits: 1 })
const bytes = (n) => {
  if (n === undefined || n === null) return '–'
  const units = ['B', 'kB', 'MB', 'GB']
  let i = 0
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++ }
  return `${n.toLocaleString('en-US', { maximumFractionDigits: 1 })} ${units[i]}`
}
const age = (ms) => {
  if (ms === undefined || ms === null) return '–'
  const s = Math.floor(ms / 1000)
  if (s < 60) return `${s} s`
  if (s < 3600) return `${Math.floor(s / 60)} min`
  return `${Math.floor(s / 3600)} h ${Math.floor(s % 3600 / 60)} min`
}

function setValue (id, text, value) {
  const node = $(id)
  node.textContent = text
  node.dataset.value = value === undefined ? text : String(value)
}

function status (text, kind) {
  const node = $('#status')
  node.textContent = text
  node.className = `badge ${kind}`
}

// ---- the socket --------------------------------------------------------------------------

async function open () {
  let answer
  try {
    answer = await fetch(`${base}/ticket`, { credentials: 'same-origin', cache: 'no-store' })
  } catch {
    return retry()
  }
  if (answer.status === 401 || answer.status === 403) {
    status(answer.status === 401 ? 'not signed in (401)' : 'not allowed (403)', 'bad')
    return
  }
  if (!answer.ok) return retry()
  const { ticket } = await answer.json()
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:'
  const socket = new WebSocket(`${scheme}//${location.host}${base}/live`, ['wss-dashboard', `ticket.${ticket}`])
  state.socket = socket
  socket.onopen = () => {
    state.retry = 500
    status('live', 'ok')
    sendQuery()
    if (state.presence !== undefined) showPresence(state.presence.room, state.presence.offset)
  }
  socket.onmessage = (event) => receive(JSON.parse(event.data))
  socket.onclose = () => {
    state.socket = undefined
    status('disconnected, retrying…', 'bad')
    retry()
  }
}

function retry () {
  setTimeout(open, state.retry)
  state.retry = Math.min(state.retry * 2, 10_000)
}

function send (message) {
  if (state.socket !== undefined && state.socket.readyState === WebSocket.OPEN) state.socket.send(JSON.stringify(message))
}

function receive (message) {
  if (message.type === 'hello') hello(message)
  else if (message.type === 'tick') tick(message)
  else if (message.type === 'table') table(message)
  else if (message.type === 'result') result(message)
  else if (message.type === 'presence') presence(message)
}

function hello (message) {
  state.readOnly = message.readOnly
  state.historySize = message.historySize
  state.history = message.history.slice()
  document.body.classList.toggle('readonly', message.readOnly)
  $('#readonly').hidden = !message.readOnly
  $('#instance').textContent = `instance ${message.instance.slice(0, 8)}`
  $('#instance').title = message.instance
  draw()
}

// ---- a tick -----------------------------------------------------------------------------

function tick (s) {
  state.last = s
  const stats = s.stats
  setValue('#stat-connections', number(stats.connections), stats.connections)
  setValue('#stat-users', number(stats.users), stats.users)
  setValue('#stat-rooms', number(stats.rooms), stats.rooms)
  setValue('#stat-in', number(s.perSecond.messagesIn), s.perSecond.messagesIn)
  setValue('#stat-out', number(s.perSecond.messagesOut), s.perSecond.messagesOut)
  setValue('#stat-bytes-in', bytes(s.perSecond.bytesIn), s.perSecond.bytesIn)
  setValue('#stat-bytes-out', bytes(s.perSecond.bytesOut), s.perSecond.bytesOut)
  setValue('#stat-broadcasts', number(stats.broadcastsTotal), stats.broadcastsTotal)
  setValue('#stat-rtt', s.rtt.count === 0 ? '–' : `${number(s.rtt.p50)} / ${number(s.rtt.p90)} / ${number(s.rtt.p99)}`, s.rtt.p50)
  setValue('#stat-gaps', number(s.adapter.gaps), s.adapter.gaps)
  const adapter = $('#adapter')
  adapter.textContent = `${s.adapter.name}: ${s.adapter.draining ? 'draining' : s.adapter.status}`
  adapter.className = `badge ${s.adapter.status === 'up' && !s.adapter.draining ? 'ok' : 'bad'}`
  counts('#disconnects', stats.disconnectsTotal)
  counts('#refusals', stats.rejectedTotal)
  counts('#inbound', stats.inboundRejectedTotal)
  rooms(s.rooms)
  cluster(s.cluster)
  state.history.push(s.sample)
  while (state.history.length > state.historySize) state.history.shift()
  draw()
}

function counts (id, record) {
  const body = $(`${id} tbody`)
  const entries = Object.entries(record).sort((a, b) => b[1] - a[1])
  body.replaceChildren(...(entries.length === 0 ? [row([el('td', 'none', 'muted')])] : entries.map(([reason, count]) => row([el('td', reason), el('td', number(count), 'num')]))))
}

function row (cells) {
  const tr = el('tr')
  tr.append(...cells)
  return tr
}

function rooms ({ total, top }) {
  $('#rooms-total').textContent = total > top.length ? `(${number(total)}, the ${top.length} largest)` : `(${number(total)})`
  $('#room-table tbody').replaceChildren(...top.map(([room, members, present]) => {
    const name = el('td', room, 'link')
    name.title = 'show its connections'
    name.onclick = () => search(room, 'room')
    const users = el('td', present === undefined ? '–' : number(present), present === undefined ? 'num muted' : 'num link')
    if (present !== undefined) {
      users.title = 'show who is present'
      users.onclick = () => showPresence(room, 0)
    }
    const tr = row([name, el('td', number(members), 'num'), users])
    tr.dataset.room = room
    return tr
  }))
}

// ---- who is present in a room (the server sends one page, then one with every tick) --------

function showPresence (room, offset) {
  state.presence = room === undefined ? undefined : { room, offset }
  $('#presence').hidden = room === undefined
  send({ type: 'presence', room: room ?? '', offset })
}

function presence (page) {
  if (state.presence === undefined || page.room !== state.presence.room) return
  $('#presence-room').textContent = page.room
  const last = Math.min(page.offset + page.users.length, page.total)
  $('#presence-total').textContent = page.total === 0 ? '(nobody)' : `(${number(page.offset + 1)}–${number(last)} of ${number(page.total)} users)`
  $('#presence-total').dataset.value = String(page.total)
  $('#presence-prev').disabled = page.offset === 0
  $('#presence-next').disabled = last >= page.total
  $('#presence-table tbody').replaceChildren(...page.users.map(([user, connections]) => {
    const name = el('td', user, 'link')
    name.title = 'show its connections'
    name.onclick = () => search(user, 'userId')
    return row([name, el('td', number(connections), 'num')])
  }))
}

function cluster (summary) {
  $('#cluster').hidden = summary === undefined
  if (summary === undefined) return
  const alive = summary.instances.filter(i => i.alive).length
  $('#cluster-total').textContent = `(${alive} live, ${number(summary.connections)} connections in all)`
  $('#cluster-total').dataset.value = String(summary.connections)
  $('#instances tbody').replaceChildren(...summary.instances.map((i) => {
    const tr = row([
      el('td', `${i.id.slice(0, 8)}${i.self ? ' (this one)' : ''}`),
      el('td', number(i.connections), 'num'),
      el('td', i.health, i.health === 'up' ? '' : 'error'),
      el('td', i.lastHeartbeat === undefined || i.lastHeartbeat === null ? '–' : `${Math.max(0, Math.round((Date.now() - i.lastHeartbeat) / 1000))} s ago`)
    ])
    tr.dataset.instance = i.id
    tr.dataset.connections = String(i.connections)
    return tr
  }))
  const error = $('#cluster-error')
  error.hidden = summary.error === undefined
  error.textContent = summary.error === undefined ? '' : `the other instances could not be asked: ${summary.error}`
}

// ---- the plot ---------------------------------------------------------------------------

const SERIES = [
  { index: 1, color: '--conn', axis: 'left' },
  { index: 2, color: '--in', axis: 'right' },
  { index: 3, color: '--out', axis: 'right' },
  { index: 4, color: '--disc', axis: 'right' }
]

function draw () {
  const canvas = $('#plot')
  const ratio = devicePixelRatio || 1
  const width = canvas.clientWidth || 1100
  const height = canvas.clientHeight || 220
  if (canvas.width !== Math.round(width * ratio)) {
    canvas.width = Math.round(width * ratio)
    canvas.height = Math.round(height * ratio)
  }
  const g = canvas.getContext('2d')
  g.setTransform(ratio, 0, 0, ratio, 0, 0)
  g.clearRect(0, 0, width, height)
  const style = getComputedStyle(document.documentElement)
  const points = state.history
  const last = points[points.length - 1]
  canvas.dataset.points = String(points.length)
  canvas.dataset.last = last === undefined ? '' : last.slice(1).join(',')
  const pad = { left: 48, right: 48, top: 8, bottom: 20 }
  const w = width - pad.left - pad.right
  const h = height - pad.top - pad.bottom
  const max = { left: 1, right: 1 }
  for (const p of points) {
    max.left = Math.max(max.left, p[1])
    max.right = Math.max(max.right, p[2], p[3], p[4])
  }
  max.left = nice(max.left)
  max.right = nice(max.right)
  g.strokeStyle = style.getPropertyValue('--line')
  g.fillStyle = style.getPropertyValue('--muted')
  g.font = '11px system-ui, sans-serif'
  g.lineWidth = 1
  for (let i = 0; i <= 4; i++) {
    const y = pad.top + h - h * i / 4
    g.beginPath()
    g.moveTo(pad.left, y)
    g.lineTo(pad.left + w, y)
    g.stroke()
    g.textAlign = 'right'
    g.fillText(short(max.left * i / 4), pad.left - 6, y + 4)
    g.textAlign = 'left'
    g.fillText(short(max.right * i / 4), pad.left + w + 6, y + 4)
  }
  if (points.length < 2) return
  const t0 = points[0][0]
  const span = Math.max(last[0] - t0, 1)
  g.textAlign = 'center'
  g.fillText(`${Math.round(span / 1000)} s`, pad.left + 20, height - 4)
  g.fillText('now', pad.left + w - 10, height - 4)
  g.lineWidth = 1.5
  for (const series of SERIES) {
    g.strokeStyle = style.getPropertyValue(series.color)
    g.beginPath()
    points.forEach((p, i) => {
      const x = pad.left + w * (p[0] - t0) / span
      const y = pad.top + h - h * p[series.index] / max[series.axis]
      if (i === 0) g.moveTo(x, y)
      else g.lineTo(x, y)
    })
    g.stroke()
  }
}

function nice (n) {
  const step = 10 ** Math.floor(Math.log10(n))
  for (const m of [1, 2, 5, 10]) if (n <= m * step) return m * step
  return 10 * step
}

function short (n) {
  if (n >= 1e6) return `${n / 1e6}M`
  if (n >= 1e3) return `${n / 1e3}k`
  return String(Math.round(n * 10) / 10)
}

// ---- the connection table -----------------------------------------------------------------

let typing
function sendQuery () {
  send({ type: 'query', ...state.query })
}

function search (text, field) {
  $('#search-text').value = text
  $('#search-field').value = field
  state.query = { ...state.query, search: text, field, offset: 0 }
  sendQuery()
}

function table (page) {
  state.total = page.total
  const { offset, limit } = page.query
  $('#page-info').textContent = page.total === 0 ? 'no connection' : `${number(offset + 1)}–${number(Math.min(offset + limit, page.total))} of ${number(page.total)}`
  $('#page-info').dataset.total = String(page.total)
  $('#prev').disabled = offset === 0
  $('#next').disabled = offset + limit >= page.total
  $('#conn-table tbody').replaceChildren(...page.rows.map((r) => {
    const rooms = r.rooms.join(', ') + (r.roomCount > r.rooms.length ? ` +${r.roomCount - r.rooms.length}` : '')
    const id = el('td', r.clientId)
    id.title = r.clientId
    const actions = el('td', undefined, 'row-actions')
    const disconnect = el('button', 'disconnect', 'danger')
    disconnect.type = 'button'
    disconnect.dataset.clientId = r.clientId
    disconnect.onclick = () => act({ action: 'disconnect', clientId: r.clientId, ...closeFields() })
    const message = el('button', 'send…')
    message.type = 'button'
    message.onclick = () => target('connection', r.clientId)
    actions.append(disconnect, message)
    const tr = row([
      id,
      el('td', r.userId ?? '–'),
      el('td', r.route ?? '–'),
      el('td', rooms === '' ? '–' : rooms),
      el('td', number(r.rttMs), 'num'),
      el('td', bytes(r.bufferedBytes), 'num'),
      el('td', number(r.inPerSecond), 'num'),
      el('td', number(r.outPerSecond), 'num'),
      el('td', age(r.ageMs), 'num'),
      el('td', r.instance === 'remote' ? 'other' : 'here'),
      actions
    ])
    tr.dataset.clientId = r.clientId
    return tr
  }))
}

$('#search').onsubmit = (event) => event.preventDefault()
$('#search-text').oninput = () => {
  clearTimeout(typing)
  typing = setTimeout(() => search($('#search-text').value.trim(), $('#search-field').value), 200)
}
$('#search-field').onchange = () => search($('#search-text').value.trim(), $('#search-field').value)
$('#presence-prev').onclick = () => showPresence(state.presence.room, Math.max(0, state.presence.offset - 100))
$('#presence-next').onclick = () => showPresence(state.presence.room, state.presence.offset + 100)
$('#presence-close').onclick = () => showPresence(undefined, 0)

$('#prev').onclick = () => {
  state.query = { ...state.query, offset: Math.max(0, state.query.offset - state.query.limit) }
  sendQuery()
}
$('#next').onclick = () => {
  if (state.query.offset + state.query.limit >= state.total) return
  state.query = { ...state.query, offset: state.query.offset + state.query.limit }
  sendQuery()
}

// ---- actions ----------------------------------------------------------------------------

function closeFields () {
  return { code: $('#act-code').value.trim(), reason: $('#act-reason').value }
}

function target (kind, value) {
  $('#act-kind').value = kind
  $('#act-target').value = value
  $('#act-message').focus()
}

function act (message) {
  const id = state.nextId++
  send({ type: 'action', id, ...message })
}

function result (r) {
  const item = el('li', r.message, r.ok ? 'ok' : 'fail')
  $('#results').prepend(item)
  while ($('#results').children.length > 20) $('#results').lastChild.remove()
}

$('#act').onsubmit = (event) => event.preventDefault()
$('#act-disconnect').onclick = () => {
  const kind = $('#act-kind').value
  const value = $('#act-target').value.trim()
  if (kind === 'room') return result({ ok: false, message: 'a room cannot be disconnected: search it and disconnect its connections' })
  act(kind === 'user' ? { action: 'disconnectUser', userId: value, ...closeFields() } : { action: 'disconnect', clientId: value, ...closeFields() })
}
$('#act-send').onclick = () => {
  const kind = $('#act-kind').value
  const value = $('#act-target').value.trim()
  const message = { message: $('#act-message').value, json: $('#act-json').checked }
  if (kind === 'user') return result({ ok: false, message: 'send to a connection or a room' })
  act(kind === 'room' ? { action: 'sendRoom', room: value, ...message } : { action: 'send', clientId: value, ...message })
}

open()
