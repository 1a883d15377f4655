/* The agent inbox: conversation list, conversation view, composer, team presence.
 *
 * Talks to the server only through the contract: REST under /api (session cookie, and the
 * page's <meta name="csrf-token"> as X-CSRFToken on every unsafe call) and Socket.IO events
 * through the official socket.io-client (window.io). Every piece of text that came from a
 * visitor or another agent is put into the page with textContent or as an attribute value,
 * never parsed as HTML. The open conversation's messages are kept gap-free by seq: a hole, or
 * a conversation_head beyond what is shown, is fetched with after_seq (ChatSeqGaps,
 * seqgap.js), and rejoins start from the last gap-free seq.
 */
(function () {
  'use strict';

  var PAGE_SIZE = 50;
  var ACK_TIMEOUT_MS = 10000;
  var TYPING_EVERY_MS = 2000;
  var FILTERS = ['unassigned', 'mine', 'all'];

  var body = document.body;
  var CSRF = document.querySelector('meta[name="csrf-token"]').getAttribute('content');
  var ME = {
    id: body.dataset.userId,
    name: body.dataset.userName,
    role: body.dataset.userRole,
  };
  var IS_ADMIN = ME.role === 'owner' || ME.role === 'admin';

  var state = {
    filter: initialFilter(),
    convs: new Map(), // id -> conversation, as GET /api/conversations/<id> shapes it
    previews: new Map(), // id -> the last conversation_updated payload
    resolutions: new Map(), // id -> {tags, resolved_at} of the session last resolved here
    unread: new Set(), // conversation ids with visitor messages the agent has not seen
    inflight: new Map(), // id -> {dirty} while GET /api/conversations/<id> runs
    queued: null, // queue events that arrive while the list loads, replayed after it
    listGeneration: 0,
    current: null,
    messages: new Map(), // seq -> message of the open conversation
    readSent: new Set(),
    lastSeq: 0, // the highest seq shown; gaps.gapFree() is the highest without a hole
    oldestSeq: null,
    team: new Map(), // id -> {id, display_name, role}
    online: new Set(),
    teamRequested: false,
    lastTypingEmit: 0,
    busy: false,
  };

  // ---- small helpers --------------------------------------------------------------------

  function $(selector, root) {
    return (root || document).querySelector(selector);
  }

  /* el('div', {class: 'x', text: 'y', dataset: {...}, onclick: fn}, child, ...): strings
   * become text nodes, attributes are set with setAttribute, so nothing is parsed as HTML. */
  function el(tag, props) {
    var node = document.createElement(tag);
    var key;
    props = props || {};
    for (key in props) {
      if (!Object.prototype.hasOwnProperty.call(props, key)) continue;
      var value = props[key];
      if (value === null || value === undefined || value === false) continue;
      if (key === 'class') node.className = value;
      else if (key === 'text') node.textContent = value;
      else if (key === 'dataset') Object.assign(node.dataset, value);
      else if (key.slice(0, 2) === 'on') node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? '' : String(value));
    }
    for (var i = 2; i < arguments.length; i++) {
      var child = arguments[i];
      if (child === null || child === undefined || child === false) continue;
      node.append(child);
    }
    return node;
  }

  /* Links and images only to http(s) or our own root-relative paths (uploads): the server
   * validates rich_media the same way; this keeps javascript: out even if it did not. */
  function safeUrl(url) {
    if (typeof url !== 'string') return null;
    if (/^https?:\/\/[^\s/]+/i.test(url)) return url;
    if (url.charAt(0) === '/' && url.charAt(1) !== '/' && url.charAt(1) !== '\\') return url;
    return null;
  }

  function randomId() {
    var bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) {
      return (b < 16 ? '0' : '') + b.toString(16);
    }).join('');
  }

  // The server's times are UTC without a zone suffix (as in the guide's examples).
  function parseTime(iso) {
    if (!iso) return null;
    var d = new Date(/[zZ]|[+-]\d\d:\d\d$/.test(iso) ? iso : iso + 'Z');
    return isNaN(d.getTime()) ? null : d;
  }

  function nowIso() {
    return new Date().toISOString().replace('Z', '000');
  }

  function formatTime(iso) {
    var d = parseTime(iso);
    if (!d) return '';
    var today = new Date();
    var sameDay = d.toDateString() === today.toDateString();
    var time = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    return sameDay ? time : d.toLocaleDateString([], { month: 'short', day: 'numeric' }) + ' ' + time;
  }

  function formatSize(size) {
    if (typeof size !== 'number' || !isFinite(size) || size < 0) return '';
    if (size < 1024) return size + ' B';
    if (size < 1024 * 1024) return (size / 1024).toFixed(1) + ' KB';
    return (size / (1024 * 1024)).toFixed(1) + ' MB';
  }

  var toastTimer = null;
  function toast(message, kind) {
    var box = $('#toast');
    box.textContent = message;
    box.dataset.kind = kind || 'error';
    box.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(function () { box.hidden = true; }, 5000);
  }

  function initialFilter() {
    var f = new URLSearchParams(window.location.search).get('filter');
    return FILTERS.indexOf(f) >= 0 ? f : 'unassigned';
  }

  // ---- REST -----------------------------------------------------------------------------

  function ApiError(message, status, code) {
    this.message = message;
    this.status = status;
    this.code = code;
  }
  ApiError.prototype = Object.create(Error.prototype);

  function api(path, options) {
    options = options || {};
    var method = options.method || 'GET';
    var headers = { Accept: 'application/json' };
    var payload = options.body;
    if (method !== 'GET' && method !== 'HEAD') headers['X-CSRFToken'] = CSRF;
    if (options.json !== undefined) {
      headers['Content-Type'] = 'application/json';
      payload = JSON.stringify(options.json);
    }
    return fetch(path, {
      method: method,
      headers: headers,
      body: payload,
      credentials: 'same-origin',
    }).then(function (resp) {
      if (resp.status === 401) {
        window.location.assign('/auth/login?next=/inbox');
        throw new ApiError('Your session ended; please sign in again.', 401, 'not_authenticated');
      }
      var type = resp.headers.get('Content-Type') || '';
      var parsed = type.indexOf('application/json') >= 0 ? resp.json() : Promise.resolve(null);
      return parsed.then(function (data) {
        if (!resp.ok) {
          var err = (data && data.error) || {};
          throw new ApiError(err.message || resp.statusText || 'Request failed.', resp.status, err.code);
        }
        return data;
      });
    });
  }

  // ---- Socket.IO ------------------------------------------------------------------------

  var socket = window.io({ withCredentials: true });

  var gaps = new window.ChatSeqGaps({
    fetchAfter: function (seq) {
      var id = state.current;
      return api('/api/conversations/' + encodeURIComponent(id) + '/messages?after_seq=' + seq +
        '&limit=200').then(function (page) { return id === state.current ? page : []; });
    },
    deliver: function (m) { onMessage(m); },
  });

  function emitAck(event, data) {
    var timed = socket.timeout(ACK_TIMEOUT_MS);
    var sent = data === undefined ? timed.emitWithAck(event) : timed.emitWithAck(event, data);
    return sent.then(function (ack) {
      if (ack && ack.error) throw new ApiError(ack.error.message, 0, ack.error.code);
      return ack;
    }, function () {
      throw new ApiError('The server did not answer; check your connection.', 0, 'timeout');
    });
  }

  function setConnection(stateName, label) {
    var node = $('#connection');
    node.dataset.state = stateName;
    node.textContent = label;
  }

  var connections = 0;
  socket.on('connect', function () {
    setConnection('online', 'Connected');
    body.dataset.connections = String(++connections);
    Promise.all([emitAck('join_queue'), emitAck('join_org_presence')])
      .then(function (acks) {
        state.online = new Set(acks[1].online || []);
        renderTeam();
        return loadList();
      })
      .then(function () {
        // After a reconnect: catch up on what the open conversation missed.
        if (state.current) return joinCurrent();
        return null;
      })
      .then(function () {
        body.dataset.ready = 'true';
      })
      .catch(function (err) { toast(err.message); });
  });

  socket.on('disconnect', function () {
    body.dataset.ready = 'false';
    setConnection('offline', 'Reconnecting…');
    showTyping(null);
  });

  socket.on('connect_error', function (err) {
    setConnection('offline', 'Reconnecting…');
    // socket.io-client gives up after the server refuses a handshake; "unavailable" (the
    // database or Redis is down for a moment) is worth trying again.
    var data = err && err.data;
    if (data && data.code === 'unavailable' && !socket.active) {
      setTimeout(function () { socket.connect(); }, Math.max(1000, data.retry_after_ms || 0));
    }
  });

  socket.on('conversation_updated', function (e) { queueOr(applyUpdated, e); });
  socket.on('conversation_assigned', function (e) { queueOr(applyAssigned, e); });
  socket.on('conversation_resolved', function (e) { queueOr(applyResolved, e); });
  socket.on('message_received', function (m) { onMessage(m); });
  // After a fan-out outage the server announces each conversation's head seq.
  socket.on('conversation_head', function (e) {
    if (e && e.conversation_id === state.current) gaps.head(e.last_seq);
  });
  socket.on('typing_indicator', function (e) {
    if (e.conversation_id === state.current) showTyping(e.sender_type);
  });
  socket.on('typing_cleared', function (e) {
    if (e.conversation_id === state.current) showTyping(null);
  });
  socket.on('agent_status_changed', function (e) {
    if (e.status === 'online') state.online.add(e.agent_id);
    else state.online.delete(e.agent_id);
    if (!state.team.has(e.agent_id)) loadTeam();
    renderTeam();
  });

  // ---- the conversation list ------------------------------------------------------------

  function queueOr(fn, event) {
    if (state.queued) state.queued.push([fn, event]);
    else fn(event);
  }

  function displayName(conv) {
    var user = conv && conv.end_user;
    if (!user) return 'Visitor';
    if (user.display_name) return user.display_name;
    return 'Visitor ' + String(user.external_id || '').slice(0, 8);
  }

  function matches(conv, filter) {
    var s = conv.active_session;
    if (filter === 'unassigned') return !!s && !s.assigned_agent_id;
    if (filter === 'mine') return !!s && s.assigned_agent_id === ME.id;
    return true;
  }

  function agentName(id) {
    if (id === ME.id) return 'you';
    var member = state.team.get(id);
    return member ? member.display_name : id;
  }

  function statusOf(conv) {
    var s = conv.active_session;
    if (!s) return { key: 'resolved', label: 'Resolved' };
    if (!s.assigned_agent_id) return { key: 'unassigned', label: 'Unassigned' };
    return { key: 'assigned', label: 'Assigned to ' + agentName(s.assigned_agent_id) };
  }

  function previewText(p) {
    if (!p) return '';
    var text = p.content || '';
    switch (p.content_type) {
      case 'image': return 'Image' + (text ? ': ' + text : '');
      case 'file': return 'File' + (text ? ': ' + text : '');
      case 'quick_button': return 'Quick buttons' + (text ? ': ' + text : '');
      case 'dropdown': return 'Dropdown' + (text ? ': ' + text : '');
      case 'carousel': return 'Carousel' + (text ? ': ' + text : '');
      default: return (p.sender_type === 'agent' ? 'Agent: ' : '') + text;
    }
  }

  function loadList() {
    var generation = ++state.listGeneration;
    var filter = state.filter;
    state.queued = state.queued || [];
    return api('/api/conversations/?filter=' + encodeURIComponent(filter) + '&limit=100')
      .then(function (list) {
        if (generation !== state.listGeneration) return;
        var fresh = new Map();
        list.forEach(function (c) { fresh.set(c.id, c); });
        // The open conversation stays known even when it left the filter.
        if (state.current && !fresh.has(state.current) && state.convs.has(state.current)) {
          fresh.set(state.current, state.convs.get(state.current));
        }
        state.convs = fresh;
        replayQueued();
        renderList();
      })
      .catch(function (err) {
        if (generation === state.listGeneration) replayQueued();
        throw err;
      });
  }

  function replayQueued() {
    var queued = state.queued || [];
    state.queued = null;
    queued.forEach(function (item) { item[0](item[1]); });
  }

  /* Re-read one conversation; when asked again while a read runs, read once more after it,
   * so the last read always started after the last event about it. */
  function refreshConversation(id) {
    var running = state.inflight.get(id);
    if (running) {
      running.dirty = true;
      return running.promise;
    }
    var flag = { dirty: false, promise: null };
    state.inflight.set(id, flag);
    function once() {
      flag.dirty = false;
      return api('/api/conversations/' + encodeURIComponent(id)).then(function (conv) {
        state.convs.set(id, conv);
        if (flag.dirty) return once();
        return conv;
      });
    }
    flag.promise = once()
      .catch(function (err) { if (err.status !== 404) toast(err.message); })
      .then(function () {
        state.inflight.delete(id);
        renderList();
        if (id === state.current) renderHeader();
      });
    return flag.promise;
  }

  function applyUpdated(e) {
    var id = e.conversation_id;
    state.previews.set(id, e);
    if (e.sender_type === 'end_user' && (id !== state.current || document.hidden)) {
      state.unread.add(id);
    }
    var conv = state.convs.get(id);
    if (!conv || !conv.active_session || state.inflight.has(id)) {
      refreshConversation(id);
    } else {
      conv.updated_at = nowIso();
    }
    renderList();
    updateTitle();
  }

  function applyAssigned(e) {
    var id = e.conversation_id;
    var conv = state.convs.get(id);
    if (conv && conv.active_session && !state.inflight.has(id)) {
      conv.active_session.assigned_agent_id = e.assigned_to;
      renderList();
      if (id === state.current) renderHeader();
    } else {
      refreshConversation(id);
    }
  }

  function applyResolved(e) {
    var id = e.conversation_id;
    // Both the REST answer and the event report a resolve: handle each session once.
    var known = state.resolutions.get(id);
    if (known && known.session_id === e.session_id) return;
    state.resolutions.set(id, { session_id: e.session_id, tags: e.tags || [], resolved_at: e.resolved_at });
    state.unread.delete(id);
    var conv = state.convs.get(id);
    if (conv && !state.inflight.has(id)) {
      conv.active_session = null;
      conv.updated_at = e.resolved_at || nowIso();
    } else {
      refreshConversation(id);
    }
    if (id === state.current) {
      renderHeader();
      addSystemLine('Resolved' + tagsSuffix(e.tags));
    }
    renderList();
    updateTitle();
  }

  function tagsSuffix(tags) {
    return tags && tags.length ? ' with tags: ' + tags.join(', ') : '';
  }

  function renderList() {
    var items = [];
    state.convs.forEach(function (c) { if (matches(c, state.filter)) items.push(c); });
    items.sort(function (a, b) {
      return String(b.updated_at || '').localeCompare(String(a.updated_at || ''));
    });
    var list = $('#conversation-list');
    list.replaceChildren.apply(list, items.map(renderListItem));
    $('#list-empty').hidden = items.length > 0;
    document.querySelectorAll('.filters [data-filter]').forEach(function (tab) {
      tab.setAttribute('aria-selected', String(tab.dataset.filter === state.filter));
    });
  }

  function renderListItem(conv) {
    var status = statusOf(conv);
    var unread = state.unread.has(conv.id);
    var classes = 'conv-item' + (conv.id === state.current ? ' active' : '') + (unread ? ' unread' : '');
    var open = el('button', {
      class: 'conv-open',
      type: 'button',
      onclick: function () { openConversation(conv.id); },
    },
      el('span', { class: 'conv-line' },
        el('span', { class: 'conv-name', text: displayName(conv) }),
        el('time', { class: 'conv-time', text: formatTime(conv.updated_at) })),
      el('span', { class: 'conv-preview', text: previewText(state.previews.get(conv.id)) }),
      el('span', { class: 'conv-status status-' + status.key, text: status.label }),
      unread ? el('span', { class: 'unread-dot', title: 'Unread', 'aria-label': 'unread' }) : null);
    var claimButton = status.key === 'unassigned'
      ? el('button', {
        class: 'button small primary conv-claim',
        type: 'button',
        onclick: function () { claim(conv.id); },
        text: 'Claim',
      })
      : null;
    return el('li', { class: classes, dataset: { id: conv.id, state: status.key } }, open, claimButton);
  }

  function updateTitle() {
    var n = state.unread.size;
    document.title = n ? '(' + n + ') Inbox' : 'Inbox';
  }

  function setFilter(filter) {
    if (FILTERS.indexOf(filter) < 0 || filter === state.filter) return;
    state.filter = filter;
    var url = new URL(window.location.href);
    url.searchParams.set('filter', filter);
    window.history.replaceState(null, '', url.pathname + url.search + url.hash);
    renderList();
    loadList().catch(function (err) { toast(err.message); });
  }

  // ---- claiming and resolving -----------------------------------------------------------

  function claim(id) {
    return emitAck('claim_conversation', { conversation_id: id })
      .then(function (ack) {
        var conv = state.convs.get(id);
        if (conv && conv.active_session) conv.active_session.assigned_agent_id = ack.assigned_agent_id;
        renderList();
        if (id === state.current) renderHeader();
        else if (!state.current) openConversation(id);
      })
      .catch(function (err) {
        toast(err.message);
        refreshConversation(id);
      });
  }

  function resolveCurrent(event) {
    event.preventDefault();
    var id = state.current;
    var input = $('#resolve-tags');
    var tags = input.value.split(',').map(function (t) { return t.trim(); }).filter(Boolean);
    $('#resolve').disabled = true;
    api('/api/conversations/' + encodeURIComponent(id) + '/resolve', { method: 'POST', json: { tags: tags } })
      .then(function (res) {
        input.value = '';
        applyResolved({
          conversation_id: id, session_id: res.session_id, tags: res.tags, resolved_at: res.resolved_at,
        });
        toast('Resolved' + tagsSuffix(res.tags), 'info');
      })
      .catch(function (err) { toast(err.message); })
      .then(function () { $('#resolve').disabled = false; });
  }

  // ---- the open conversation ------------------------------------------------------------

  function canAct(conv) {
    var s = conv && conv.active_session;
    return IS_ADMIN || !s || !s.assigned_agent_id || s.assigned_agent_id === ME.id;
  }

  function renderHeader() {
    var conv = state.convs.get(state.current);
    if (!conv) return;
    var status = statusOf(conv);
    $('#conv-title').textContent = displayName(conv);
    var meta = [status.label];
    if (conv.active_session && conv.active_session.tags && conv.active_session.tags.length) {
      meta.push('tags: ' + conv.active_session.tags.join(', '));
    }
    var resolution = state.resolutions.get(conv.id);
    if (!conv.active_session && resolution && resolution.tags.length) {
      meta.push('tags: ' + resolution.tags.join(', '));
    }
    meta.push('visitor id ' + (conv.end_user ? conv.end_user.external_id : ''));
    $('#conv-meta').textContent = meta.join(' · ');
    $('#conversation-view').dataset.state = status.key;
    $('#claim').hidden = status.key !== 'unassigned';
    $('#resolve-form').hidden = !conv.active_session || !canAct(conv);
    var allowed = canAct(conv);
    $('#composer').classList.toggle('disabled', !allowed);
    Array.prototype.forEach.call($('#composer').elements, function (control) {
      control.disabled = !allowed;
    });
    $('#composer-note').textContent = allowed
      ? (conv.active_session ? '' : 'Writing reopens this conversation and assigns it to you.')
      : 'Assigned to ' + agentName(conv.active_session.assigned_agent_id) + '.';
  }

  function resetMessages() {
    gaps.reset(0);
    state.messages = new Map();
    state.readSent = new Set();
    state.lastSeq = 0;
    state.oldestSeq = null;
    $('#message-list').replaceChildren();
    $('#load-older').hidden = true;
    showTyping(null);
  }

  function openConversation(id) {
    if (state.current === id) return Promise.resolve();
    var previous = state.current;
    if (previous && socket.connected) {
      socket.emit('leave_conversation', { conversation_id: previous });
    }
    state.current = id;
    resetMessages();
    state.unread.delete(id);
    updateTitle();
    if (window.location.hash !== '#' + id) {
      window.history.replaceState(null, '', window.location.pathname + window.location.search + '#' + id);
    }
    $('#placeholder').hidden = true;
    $('#conversation-view').hidden = false;
    $('#conv-title').textContent = state.convs.has(id) ? displayName(state.convs.get(id)) : '';
    renderList();
    renderHeader();
    return refreshConversation(id)
      .then(function () {
        if (state.current !== id) return null;
        return api('/api/conversations/' + encodeURIComponent(id) + '/messages?limit=' + PAGE_SIZE);
      })
      .then(function (page) {
        if (!page || state.current !== id) return null;
        // The newest page: gap-free from its first seq.
        gaps.reset(page.length ? page[0].seq - 1 : 0);
        page.forEach(function (m) { addMessage(m); });
        updateOlderButton();
        scrollToBottom();
        // Joining with last_seq replays whatever was stored after the page we just read,
        // before any live message: nothing falls between history and the room.
        return socket.connected ? joinCurrent() : null;
      })
      .then(markRead)
      .catch(function (err) { toast(err.message); });
  }

  function joinCurrent() {
    var id = state.current;
    return emitAck('join_conversation', { conversation_id: id, last_seq: gaps.gapFree() })
      .then(function (ack) {
        if (state.current === id) gaps.head(ack.last_seq);
        return ack;
      });
  }

  function onMessage(m) {
    if (m.conversation_id !== state.current) return;
    if (m.sender_type === 'end_user') showTyping(null);
    var box = $('#messages');
    var nearBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 80;
    if (addMessage(m) && (nearBottom || (m.sender_type === 'agent' && m.sender_id === ME.id))) {
      scrollToBottom();
    }
    markRead();
  }

  /* Messages are keyed by seq: a replayed, acked or re-fetched message is shown once. */
  function addMessage(m) {
    if (!m || m.conversation_id !== state.current || state.messages.has(m.seq)) return false;
    state.messages.set(m.seq, m);
    state.lastSeq = Math.max(state.lastSeq, m.seq);
    gaps.held(m.seq);
    state.oldestSeq = state.oldestSeq === null ? m.seq : Math.min(state.oldestSeq, m.seq);
    var node = renderMessage(m);
    var list = $('#message-list');
    var before = null;
    for (var i = 0; i < list.children.length; i++) {
      var child = list.children[i];
      if (child.dataset.seq && Number(child.dataset.seq) > m.seq) { before = child; break; }
    }
    list.insertBefore(node, before);
    return true;
  }

  function addSystemLine(text) {
    $('#message-list').append(el('li', { class: 'system-line', text: text }));
    scrollToBottom();
  }

  function senderLabel(m) {
    if (m.sender_type === 'end_user') return displayName(state.convs.get(m.conversation_id));
    if (m.sender_type === 'bot') return 'Bot';
    return m.sender_id === ME.id ? 'You' : agentName(m.sender_id);
  }

  function renderMessage(m) {
    var mine = m.sender_type === 'agent' && m.sender_id === ME.id;
    var bubble = el('div', { class: 'bubble' });
    var media = m.rich_media || {};
    // A file message's content is usually its name, which the file link shows already.
    var echo = m.content_type === 'file' && m.content === media.filename;
    if (m.content && !echo) bubble.append(el('div', { class: 'msg-text', text: m.content }));
    var rich = renderRich(m);
    if (rich) bubble.append(rich);
    return el('li', {
      class: 'msg from-' + m.sender_type + (mine ? ' mine' : ''),
      dataset: { seq: m.seq, id: m.id, contentType: m.content_type, senderType: m.sender_type },
    },
      el('div', { class: 'msg-meta' },
        el('span', { class: 'msg-sender', text: senderLabel(m) }),
        el('time', { class: 'msg-time', datetime: m.created_at, text: formatTime(m.created_at) })),
      bubble);
  }

  function chips(items, kind) {
    var wrap = el('div', { class: 'chips', dataset: { kind: kind } });
    (items || []).forEach(function (item) {
      if (!item) return;
      wrap.append(el('span', {
        class: 'chip',
        title: 'value: ' + item.value,
        dataset: { value: item.value },
        text: item.label,
      }));
    });
    return wrap;
  }

  /* Rich messages as the agent sees them: read-only (the visitor is the one who clicks). */
  function renderRich(m) {
    var r = m.rich_media;
    if (!r || typeof r !== 'object') return null;
    var url;
    switch (m.content_type) {
      case 'image':
        url = safeUrl(r.url);
        if (!url) return null;
        return el('a', { class: 'rich-image', href: url, target: '_blank', rel: 'noopener noreferrer' },
          el('img', { class: 'thumb', src: url, alt: r.alt || 'Image', loading: 'lazy' }));
      case 'file':
        url = safeUrl(r.url);
        return el(url ? 'a' : 'span', {
          class: 'rich-file',
          href: url,
          target: url ? '_blank' : null,
          rel: url ? 'noopener noreferrer' : null,
          download: url ? (r.filename || true) : null,
        },
          el('span', { class: 'file-icon', 'aria-hidden': 'true', text: fileBadge(r) }),
          el('span', { class: 'file-name', text: r.filename || 'file' }),
          el('span', { class: 'file-size', text: formatSize(r.size) }),
          r.mime_type ? el('span', { class: 'file-type', text: r.mime_type }) : null);
      case 'quick_button':
        return el('div', { class: 'rich-buttons' }, chips(r.buttons, 'button'));
      case 'dropdown':
        return el('div', { class: 'rich-dropdown' },
          el('div', { class: 'dropdown-placeholder', text: r.placeholder || 'Choose…' }),
          chips(r.options, 'option'));
      case 'carousel':
        return el('div', { class: 'rich-carousel' }, ...(r.cards || []).map(function (card) {
          var img = safeUrl(card.image_url);
          return el('div', { class: 'card' },
            img ? el('img', { class: 'card-image', src: img, alt: card.title || '', loading: 'lazy' }) : null,
            el('div', { class: 'card-title', text: card.title || '' }),
            card.subtitle ? el('div', { class: 'card-subtitle', text: card.subtitle }) : null,
            card.buttons && card.buttons.length ? chips(card.buttons, 'button') : null);
        }));
      default:
        return null;
    }
  }

  function fileBadge(r) {
    var match = /\.([A-Za-z0-9]{1,4})$/.exec(r.filename || '');
    return match ? match[1].toUpperCase() : 'FILE';
  }

  function updateOlderButton() {
    $('#load-older').hidden = !(state.oldestSeq !== null && state.oldestSeq > 1);
  }

  /* Older pages by offset: the history skips the `offset` newest messages. Seqs are gap-free
   * from 1, so the messages from the oldest shown to the newest seen are lastSeq-oldest+1. */
  function loadOlder() {
    var id = state.current;
    if (!id || state.oldestSeq === null) return;
    var offset = state.lastSeq - state.oldestSeq + 1;
    var button = $('#load-older');
    button.disabled = true;
    api('/api/conversations/' + encodeURIComponent(id) + '/messages?limit=' + PAGE_SIZE + '&offset=' + offset)
      .then(function (page) {
        if (state.current !== id) return;
        var box = $('#messages');
        var fromBottom = box.scrollHeight - box.scrollTop;
        page.forEach(function (m) { addMessage(m); });
        box.scrollTop = box.scrollHeight - fromBottom;
        if (!page.length) state.oldestSeq = 1;
        updateOlderButton();
      })
      .catch(function (err) { toast(err.message); })
      .then(function () { button.disabled = false; });
  }

  function scrollToBottom() {
    var box = $('#messages');
    box.scrollTop = box.scrollHeight;
  }

  function showTyping(senderType) {
    var node = $('#typing');
    if (!senderType) {
      node.hidden = true;
      node.textContent = '';
      delete node.dataset.sender;
      return;
    }
    var conv = state.convs.get(state.current);
    node.dataset.sender = senderType;
    node.textContent = senderType === 'end_user'
      ? displayName(conv) + ' is typing…'
      : 'A colleague is typing…';
    node.hidden = false;
  }

  /* Visitor messages on screen are reported read (mark_read), so the widget can show it. */
  function markRead() {
    if (document.hidden || !state.current || !socket.connected) return;
    var ids = [];
    state.messages.forEach(function (m) {
      if (m.sender_type !== 'end_user' || state.readSent.has(m.id)) return;
      if (m.read_by && m.read_by[ME.id]) return;
      ids.push(m.id);
    });
    if (!ids.length) return;
    ids = ids.slice(-100);
    ids.forEach(function (id) { state.readSent.add(id); });
    emitAck('mark_read', { conversation_id: state.current, message_ids: ids, sender_type: 'agent' })
      .catch(function () { /* best effort: a read receipt is not worth an error toast */ });
  }

  // ---- the composer ---------------------------------------------------------------------

  function rowEditor(kind, initialRows) {
    var rows = el('ul', { class: 'rows', dataset: { kind: kind } });
    function addRow(label, value) {
      rows.append(el('li', { class: 'row' },
        el('input', { class: 'row-label', type: 'text', placeholder: 'Label', 'aria-label': kind + ' label', value: label || '' }),
        el('input', { class: 'row-value', type: 'text', placeholder: 'Value (defaults to the label)', 'aria-label': kind + ' value', value: value || '' }),
        el('button', {
          class: 'button small subtle remove-row',
          type: 'button',
          'aria-label': 'Remove',
          text: '\u00D7',
          onclick: function (ev) { ev.currentTarget.closest('li').remove(); },
        })));
    }
    for (var i = 0; i < initialRows; i++) addRow();
    return el('div', { class: 'row-editor' }, rows,
      el('button', {
        class: 'button small subtle add-row',
        type: 'button',
        text: 'Add ' + kind,
        onclick: function () { addRow(); },
      }));
  }

  function cardEditor() {
    return el('fieldset', { class: 'card-editor' },
      el('legend', { text: 'Card' }),
      el('input', { class: 'card-title-input', type: 'text', placeholder: 'Title (required)', 'aria-label': 'Card title' }),
      el('input', { class: 'card-subtitle-input', type: 'text', placeholder: 'Subtitle', 'aria-label': 'Card subtitle' }),
      el('input', { class: 'card-image-input', type: 'url', placeholder: 'Image URL (https://… or /uploads/…)', 'aria-label': 'Card image URL' }),
      rowEditor('button', 1),
      el('button', {
        class: 'button small subtle remove-card',
        type: 'button',
        text: 'Remove card',
        onclick: function (ev) { ev.currentTarget.closest('fieldset').remove(); },
      }));
  }

  var PLACEHOLDERS = {
    text: 'Write a reply… (Enter sends, Shift+Enter adds a line)',
    quick_button: 'Prompt shown above the buttons, e.g. "Choose an option:"',
    dropdown: 'Prompt shown above the dropdown, e.g. "Select your region:"',
    carousel: 'Optional text shown above the cards',
  };

  function setComposerType(type) {
    var editor = $('#rich-editor');
    $('#composer-type').value = type;
    $('#composer-text').placeholder = PLACEHOLDERS[type];
    editor.replaceChildren();
    editor.dataset.type = type;
    if (type === 'quick_button') {
      editor.append(el('div', { class: 'editor-title', text: 'Buttons' }), rowEditor('button', 2));
    } else if (type === 'dropdown') {
      editor.append(
        el('input', { id: 'dropdown-placeholder', type: 'text', placeholder: 'Placeholder, e.g. -- pick one --', 'aria-label': 'Dropdown placeholder' }),
        el('div', { class: 'editor-title', text: 'Options' }),
        rowEditor('option', 2));
    } else if (type === 'carousel') {
      var cards = el('div', { class: 'cards' }, cardEditor());
      editor.append(cards, el('button', {
        id: 'add-card',
        class: 'button small subtle',
        type: 'button',
        text: 'Add card',
        onclick: function () { cards.append(cardEditor()); },
      }));
    }
    editor.hidden = type === 'text';
  }

  function collectRows(root) {
    var out = [];
    root.querySelectorAll(':scope > .row-editor > .rows > .row').forEach(function (row) {
      var label = row.querySelector('.row-label').value.trim();
      var value = row.querySelector('.row-value').value.trim();
      if (label) out.push({ label: label, value: value || label });
    });
    return out;
  }

  function composerPayload() {
    var type = $('#composer-type').value;
    var content = $('#composer-text').value;
    var editor = $('#rich-editor');
    if (type === 'text') {
      if (!content.trim()) throw new ApiError('Write a message first.');
      return { content_type: 'text', content: content };
    }
    if (type === 'quick_button') {
      var buttons = collectRows(editor);
      if (!buttons.length) throw new ApiError('Add at least one button with a label.');
      return { content_type: type, content: content, rich_media: { buttons: buttons } };
    }
    if (type === 'dropdown') {
      var options = collectRows(editor);
      if (!options.length) throw new ApiError('Add at least one option with a label.');
      var media = { options: options };
      var placeholder = $('#dropdown-placeholder').value.trim();
      if (placeholder) media.placeholder = placeholder;
      return { content_type: type, content: content, rich_media: media };
    }
    var cards = [];
    var problem = null;
    editor.querySelectorAll('.card-editor').forEach(function (fs) {
      var title = fs.querySelector('.card-title-input').value.trim();
      var subtitle = fs.querySelector('.card-subtitle-input').value.trim();
      var image = fs.querySelector('.card-image-input').value.trim();
      var cardButtons = collectRows(fs);
      if (!title && !subtitle && !image && !cardButtons.length) return;
      if (!title) problem = 'Every card needs a title.';
      if (image && !safeUrl(image)) problem = 'A card image must be an http(s) URL or a /path.';
      var card = { title: title };
      if (subtitle) card.subtitle = subtitle;
      if (image) card.image_url = image;
      if (cardButtons.length) card.buttons = cardButtons;
      cards.push(card);
    });
    if (problem) throw new ApiError(problem);
    if (!cards.length) throw new ApiError('Add at least one card.');
    return { content_type: 'carousel', content: content, rich_media: { cards: cards } };
  }

  function send(payload) {
    var id = state.current;
    var message = {
      conversation_id: id,
      sender_type: 'agent',
      content: payload.content || '',
      content_type: payload.content_type,
      client_message_id: randomId(),
    };
    if (payload.rich_media) message.rich_media = payload.rich_media;
    return emitAck('send_message', message).then(function (stored) {
      if (stored.conversation_id === state.current) {
        addMessage(stored);
        scrollToBottom();
      }
      // Writing into a resolved conversation opened a session assigned to us.
      var conv = state.convs.get(id);
      if (conv && !conv.active_session) refreshConversation(id);
      return stored;
    });
  }

  function submitComposer(event) {
    event.preventDefault();
    if (!state.current || state.busy) return;
    var payload;
    try {
      payload = composerPayload();
    } catch (err) {
      toast(err.message);
      return;
    }
    state.busy = true;
    $('#send').disabled = true;
    var sentType = $('#composer-type').value;
    var sentText = $('#composer-text').value;
    send(payload)
      .then(function () {
        // The visitor may see the message before our ack arrives; if the agent has already
        // started the next message meanwhile, leave it alone.
        if ($('#composer-type').value !== sentType || $('#composer-text').value !== sentText) return;
        $('#composer-text').value = '';
        setComposerType('text');
        $('#composer-text').focus();
      })
      .catch(function (err) { toast(err.message); })
      .then(function () {
        state.busy = false;
        $('#send').disabled = false;
      });
  }

  /* Upload through POST /api/uploads, then send an image message for images and a file
   * message for anything else; the composer text becomes the caption. */
  function uploadAndSend(file) {
    if (!file || !state.current) return;
    var form = new FormData();
    form.append('file', file, file.name);
    var caption = $('#composer-text').value.trim();
    $('#attach').disabled = true;
    $('#composer-note').textContent = 'Uploading ' + file.name + '…';
    api('/api/uploads', { method: 'POST', body: form })
      .then(function (up) {
        var isImage = /^image\//.test(up.mime_type || '');
        if (isImage) {
          return send({
            content_type: 'image',
            content: caption,
            rich_media: { url: up.url, alt: caption || up.filename },
          });
        }
        return send({
          content_type: 'file',
          content: caption || up.filename,
          rich_media: { url: up.url, filename: up.filename, size: up.size, mime_type: up.mime_type },
        });
      })
      .then(function () {
        $('#composer-text').value = '';
        $('#composer-note').textContent = '';
      })
      .catch(function (err) {
        $('#composer-note').textContent = '';
        toast(err.message);
      })
      .then(function () {
        $('#attach').disabled = false;
        $('#file-input').value = '';
      });
  }

  function onComposerInput() {
    if (!state.current || !socket.connected) return;
    var now = Date.now();
    if (now - state.lastTypingEmit < TYPING_EVERY_MS) return;
    state.lastTypingEmit = now;
    socket.emit('user_typing', { conversation_id: state.current, sender_type: 'agent' });
  }

  // ---- the team -------------------------------------------------------------------------

  function loadTeam() {
    if (state.teamRequested) return Promise.resolve();
    state.teamRequested = true;
    return api('/api/team')
      .then(function (members) {
        members.forEach(function (m) { state.team.set(m.id, m); });
        renderTeam();
        renderList();
        if (state.current) renderHeader();
      })
      .catch(function (err) { toast(err.message); })
      .then(function () {
        // A colleague added later (unknown id on agent_status_changed) asks again.
        state.teamRequested = false;
      });
  }

  function renderTeam() {
    var ids = new Set();
    state.team.forEach(function (_m, id) { ids.add(id); });
    state.online.forEach(function (id) { ids.add(id); });
    var members = Array.from(ids).map(function (id) {
      var m = state.team.get(id) || { id: id, display_name: id, role: '' };
      return { id: id, name: m.display_name, role: m.role, online: state.online.has(id) };
    });
    members.sort(function (a, b) {
      if (a.online !== b.online) return a.online ? -1 : 1;
      return a.name.localeCompare(b.name);
    });
    var list = $('#team-list');
    list.replaceChildren.apply(list, members.map(function (m) {
      return el('li', {
        class: 'member',
        dataset: { agentId: m.id, status: m.online ? 'online' : 'offline' },
        title: m.online ? 'Online' : 'Offline',
      },
        el('span', { class: 'dot', 'aria-hidden': 'true' }),
        el('span', { class: 'member-name', text: m.name }),
        m.id === ME.id ? el('span', { class: 'member-you', text: '(you)' }) : null,
        el('span', { class: 'member-status', text: m.online ? 'online' : 'offline' }),
        m.role ? el('span', { class: 'member-role', text: m.role }) : null);
    }));
  }

  // ---- wiring ---------------------------------------------------------------------------

  function signOut() {
    api('/auth/logout', { method: 'POST' })
      .catch(function () { /* the session may already be gone */ })
      .then(function () { window.location.assign('/auth/login'); });
  }

  document.querySelectorAll('.filters [data-filter]').forEach(function (tab) {
    tab.addEventListener('click', function () { setFilter(tab.dataset.filter); });
  });
  $('#claim').addEventListener('click', function () { if (state.current) claim(state.current); });
  $('#resolve-form').addEventListener('submit', resolveCurrent);
  $('#load-older').addEventListener('click', loadOlder);
  $('#composer').addEventListener('submit', submitComposer);
  $('#composer').addEventListener('input', onComposerInput);
  $('#composer-type').addEventListener('change', function (ev) { setComposerType(ev.target.value); });
  $('#composer-text').addEventListener('keydown', function (ev) {
    if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing && $('#composer-type').value === 'text') {
      ev.preventDefault();
      $('#composer').requestSubmit();
    }
  });
  $('#attach').addEventListener('click', function () { $('#file-input').click(); });
  $('#file-input').addEventListener('change', function (ev) { uploadAndSend(ev.target.files[0]); });
  $('#sign-out').addEventListener('click', signOut);
  document.addEventListener('visibilitychange', function () {
    if (document.hidden || !state.current) return;
    if (state.unread.delete(state.current)) {
      updateTitle();
      renderList();
    }
    markRead();
  });

  setComposerType('text');
  renderList();
  updateTitle();
  loadTeam();
  var fromHash = window.location.hash.slice(1);
  if (/^[0-9a-fA-F-]{36}$/.test(fromHash)) openConversation(fromHash.toLowerCase());
})();
