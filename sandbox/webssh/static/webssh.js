// The browser side of the sandbox's web SSH: an xterm.js terminal joined to /webssh/socket.
// window.webssh is for tests (issue 16's contract): state, error, instance, size(), screenText().
(function () {
  'use strict';

  function meta(name) {
    var el = document.querySelector('meta[name="' + name + '"]');
    return el ? el.getAttribute('content') : '';
  }

  var statusEl = document.getElementById('status');
  var instance = meta('webssh-instance');
  var term = null;
  var api = {
    state: 'connecting',
    error: null,
    instance: instance,
    size: function () {
      return term ? { cols: term.cols, rows: term.rows } : { cols: 0, rows: 0 };
    },
    screenText: function () {
      // xterm 3.8 has no public buffer API: read its core buffer, one line per row.
      if (!term) { return ''; }
      var buffer = term._core.buffer;
      var lines = [];
      for (var i = 0; i < buffer.lines.length; i++) {
        lines.push(buffer.translateBufferLineToString(i, true));
      }
      while (lines.length && lines[lines.length - 1] === '') { lines.pop(); }
      return lines.join('\n');
    }
  };
  window.webssh = api;

  function show(state, message) {
    if (api.state === 'error' || (api.state === 'closed' && state !== 'error')) {
      return;     // the first ending says why; later events (the socket closing) add nothing
    }
    api.state = state;
    statusEl.className = state;
    statusEl.textContent = (instance ? instance + ': ' : '') + message;
  }

  function fail(message) {
    show('error', message);
    api.error = message;
    if (term) { term.write('\r\n\x1b[1;31m' + message.replace(/\n/g, '\r\n') + '\x1b[0m\r\n'); }
  }

  if (typeof window.Terminal !== 'function') {
    fail('The terminal (xterm.js) did not load: see the web SSH service log.');
    return;
  }

  term = new window.Terminal({
    rendererType: 'dom',
    cursorBlink: true,
    scrollback: 5000,
    fontFamily: '"DejaVu Sans Mono", monospace',
    fontSize: 14
  });
  term.open(document.getElementById('terminal'));
  term.fit();
  term.focus();

  var socketUrl = new URL('socket', window.location.href);
  socketUrl.protocol = window.location.protocol === 'https:' ? 'wss:' : 'ws:';
  socketUrl.search = '';
  // The instance the page was served for, so a later ARRAffinity change cannot move the shell.
  if (instance) { socketUrl.searchParams.set('instance', instance); }
  socketUrl.searchParams.set('cols', String(term.cols));
  socketUrl.searchParams.set('rows', String(term.rows));

  show('connecting', 'connecting');
  var ws = new WebSocket(socketUrl.toString());
  ws.binaryType = 'arraybuffer';
  // A character split across two frames must not turn into two replacement characters.
  var decoder = new TextDecoder('utf-8');

  function send(message) {
    if (ws.readyState === WebSocket.OPEN) { ws.send(JSON.stringify(message)); }
  }

  ws.onmessage = function (event) {
    if (typeof event.data !== 'string') {
      term.write(decoder.decode(new Uint8Array(event.data), { stream: true }));
      return;
    }
    var message;
    try { message = JSON.parse(event.data); } catch (e) { return; }
    if (message.type === 'error') {
      fail(message.message);
    } else if (message.type === 'status') {
      var state = message.state === 'connected' || message.state === 'closed' ? message.state
        : 'connecting';
      show(state, message.message);
    }
  };
  ws.onclose = function (event) {
    if (api.state === 'connecting' && event.code !== 1000) {
      // A refused handshake (sign-in expired, 401) reaches a page only as code 1006.
      fail('The connection to the web SSH service closed before the shell opened (code ' +
           event.code + '). If your sign-in has expired, reload the page to sign in again.');
    } else {
      show('closed', 'disconnected');
    }
  };

  term.on('data', function (data) { send({ type: 'input', data: data }); });
  term.on('resize', function (size) {
    send({ type: 'resize', cols: size.cols, rows: size.rows });
  });

  var pending = false;
  window.addEventListener('resize', function () {
    if (pending) { return; }
    pending = true;
    window.requestAnimationFrame(function () { pending = false; term.fit(); });
  });
}());
