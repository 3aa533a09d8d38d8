/* global document, history, location, URL */
/*
 * The chat page: plain JavaScript on the compiled client, no build step. The server
 * (examples/server.ts) serves this folder and the client's ES modules under /client/.
 * The name comes from `?user=` or from the form. The "here now" list is the room's presence,
 * which the client keeps from the server's presence frames (`client.presence(room)`).
 */
import { StabilizerClient } from '/client/index.js'

const $ = (selector) => document.querySelector(selector)
const el = (tag, className, text) => {
  const node = document.createElement(tag)
  if (className !== undefined) node.className = className
  if (text !== undefined) node.textContent = text
  return node
}

const view = {
  /** room → { log: <ol>, joined, unread } */
  rooms: new Map(),
  active: 'lobby',
  /** a room just asked for: shown once the server says we are in it */
  wanted: undefined,
  me: undefined
}

function status (state, text) {
  $('#status').dataset.state = state
  $('#state').textContent = text
}

function note (text) {
  $('#note').textContent = text
}

function plural (n, word) {
  return `${n} ${word}${n === 1 ? '' : 's'}`
}

function time (at) {
  return typeof at === 'number' ? new Date(at).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }) : ''
}

/** The log of a room, made on first need (a replayed message may name a room we have left since). */
function room (name) {
  let entry = view.rooms.get(name)
  if (entry !== undefined) return entry
  const log = el('ol', 'log')
  log.dataset.room = name
  log.hidden = name !== view.active
  $('#logs').append(log)
  entry = { log, joined: false, unread: 0 }
  view.rooms.set(name, entry)
  return entry
}

function renderTabs () {
  const list = $('#rooms')
  list.replaceChildren()
  for (const name of joinedRooms()) {
    const entry = view.rooms.get(name)
    const tab = el('li')
    tab.dataset.room = name
    if (name === view.active) tab.className = 'active'
    const open = el('button', 'open', `#${name}`)
    open.type = 'button'
    open.addEventListener('click', () => activate(name))
    tab.append(open)
    if (entry.unread > 0) tab.append(el('span', 'unread', String(entry.unread)))
    if (name !== 'lobby') {
      const leave = el('button', 'leave', '×')
      leave.type = 'button'
      leave.title = `Leave #${name}`
      leave.addEventListener('click', () => command({ type: 'leave', data: { room: name } }))
      tab.append(leave)
    }
    list.append(tab)
  }
}

/** The active room's presence: a user once, however many tabs and devices; past the server's cap, the count only. */
function renderUsers () {
  const list = $('#users')
  list.replaceChildren()
  const presence = client?.presence(view.active)
  $('#count').textContent = presence === undefined ? '' : `(${presence.count})`
  if (presence?.users === undefined) {
    if (presence !== undefined) list.append(el('li', 'many', plural(presence.count, 'user')))
    return
  }
  for (const [user, metas] of Object.entries(presence.users).sort(([a], [b]) => a.localeCompare(b))) {
    const item = el('li', user === view.me ? 'me' : undefined, user)
    if (metas.length > 1) item.title = `${metas.length} connections`
    list.append(item)
  }
}

function joinedRooms () {
  return [...view.rooms].filter(([, entry]) => entry.joined).map(([name]) => name)
}

function activate (name) {
  view.active = name
  const entry = room(name)
  entry.unread = 0
  for (const [other, { log }] of view.rooms) log.hidden = other !== name
  $('#room-title').textContent = `#${name}`
  renderTabs()
  renderUsers()
  entry.log.lastElementChild?.scrollIntoView({ block: 'end' })
}

function append (name, item) {
  const entry = room(name)
  entry.log.append(item)
  if (name === view.active) {
    item.scrollIntoView({ block: 'end' })
  } else if (item.classList.contains('said') && entry.joined) {
    entry.unread++
    renderTabs()
  }
}

/** A line in the log of every room we are in: the connection's story (lost, resumed, new session). */
function divider (text) {
  for (const name of joinedRooms()) view.rooms.get(name).log.append(el('li', 'divider', text))
}

let client
/** How many of the next messages are replays (from the `resumed` event). */
let replaying = 0

function command (message) {
  try {
    client.send(message)
  } catch (err) {
    note(`not sent: ${err.message}`)
  }
}

function receive (message) {
  const replayed = replaying > 0
  if (replayed) replaying--
  // the server's error frames for commands sent without an id are protocol frames: text
  if (typeof message === 'string') {
    try {
      message = JSON.parse(message)
    } catch {
      return
    }
  }
  if (message === null || typeof message !== 'object') return
  switch (message.type) {
    case 'state': {
      view.me = message.user
      $('#me').hidden = false
      $('#me').textContent = `you are ${message.user}`
      // rooms we are no longer in keep their log, without a tab
      for (const [name, entry] of view.rooms) entry.joined = message.rooms.includes(name)
      for (const name of message.rooms) room(name).joined = true
      if (view.wanted !== undefined && message.rooms.includes(view.wanted)) {
        view.active = view.wanted
        view.wanted = undefined
      }
      if (!message.rooms.includes(view.active)) view.active = message.rooms[0] ?? 'lobby'
      activate(view.active)
      break
    }
    case 'said': {
      const item = el('li', replayed ? 'said replayed' : 'said')
      item.dataset.from = message.from
      item.append(el('time', undefined, time(message.at)), el('b', 'from', message.from), el('span', 'text', message.text))
      if (replayed) item.append(el('span', 'badge', 'missed'))
      append(message.room ?? view.active, item)
      break
    }
    case 'joined':
    case 'left': {
      const item = el('li', replayed ? 'notice replayed' : 'notice', `${message.user} ${message.type} #${message.room}`)
      item.prepend(el('time', undefined, time(message.at)))
      append(message.room, item)
      break
    }
    case 'error':
      note(`server: ${message.error ?? `${message.code}: ${message.message}`}`)
      break
  }
}

function start (user) {
  $('#login').hidden = true
  $('#chat').hidden = false
  activate('lobby')
  const url = new URL('/ws', location.href)
  url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:'
  url.searchParams.set('user', user)
  client = new StabilizerClient(url.href, { protocol: 'stabilizer', reconnect: { maxDelay: 5000 } })

  client.on('message', receive)
  client.on('presence', ({ room }) => { if (room === view.active) renderUsers() })
  client.on('open', () => status('open', 'open'))
  client.on('close', ({ code, reason, willReconnect }) => {
    // also for each failed attempt: the log says it once, when an open connection is lost
    if ($('#status').dataset.state === 'open') divider(`connection lost (${code})`)
    // the note told of the connection that is gone (`resumed, …`): it would be stale beside `reconnecting`
    note('')
    if (!willReconnect) status('closed', `closed (${code}${reason === '' ? '' : `: ${reason}`})`)
  })
  client.on('reconnecting', ({ attempt, delay }) => {
    status('reconnecting', `reconnecting (attempt ${attempt}, in ${Math.round(delay)} ms)…`)
  })
  client.on('resumed', ({ replayed }) => {
    replaying = replayed
    const text = `resumed, ${plural(replayed, 'missed message')} replayed`
    note(text)
    divider(text)
  })
  client.on('resumeFailed', ({ reason }) => {
    replaying = 0
    note(`new session (${reason.replace('_', ' ')}): messages sent meanwhile are lost`)
    divider('new session')
  })
  client.on('error', (err) => console.debug('chat client:', err.code, err.message))

  status('connecting', 'connecting…')
  client.connect().catch((err) => note(`gave up: ${err.message}`))
}

$('#say').addEventListener('submit', (event) => {
  event.preventDefault()
  const input = $('#text')
  if (input.value.trim() === '') return
  command({ type: 'say', data: { room: view.active, text: input.value } })
  input.value = ''
})

$('#join').addEventListener('submit', (event) => {
  event.preventDefault()
  const input = $('#room-name')
  view.wanted = input.value
  const name = input.value
  // a request: the answer (or the server's error code) comes back to this call
  client.request('join', { room: name }).then(
    ({ room, users }) => note(`joined #${room}: ${users.length} here (${users.join(', ')})`),
    (err) => {
      if (view.wanted === name) view.wanted = undefined
      note(`not joined: ${err.code}: ${err.message}`)
    })
  input.value = ''
})

$('#login').addEventListener('submit', (event) => {
  event.preventDefault()
  const user = $('#name').value.trim()
  if (user === '') return
  const address = new URL(location.href)
  address.searchParams.set('user', user)
  history.replaceState(null, '', address)
  start(user)
})

const user = new URL(location.href).searchParams.get('user')?.trim()
if (user) {
  start(user)
} else {
  status('idle', 'not connected')
  $('#login').hidden = false
}
