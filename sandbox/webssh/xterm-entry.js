// The esbuild entry for the page's terminal: Debian's node-xterm ships CommonJS modules only,
// so this bundles xterm and its fit addon into one browser script that sets window.Terminal.
const { Terminal } = require('xterm');
const fit = require('xterm/lib/addons/fit/fit');
Terminal.applyAddon(fit);
window.Terminal = Terminal;
