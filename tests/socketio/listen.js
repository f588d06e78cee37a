// A socket.io listener written the way Evolution API's docs show it:
//   io(`${server}/${instance}`, { transports: ['websocket'] })
// Usage: node listen.js URL APIKEY MODE COUNT [EVENT...]
//   MODE: "query" (apikey in the query string), "auth" (in the CONNECT auth payload),
//         "none" (no key). COUNT: exit 0 after this many events (0: run until killed).
//   EVENT: socket.io event names to listen to (default: every event, via onAny).
// Prints one line per happening: "connected", "connect_error <message>",
// "event <name> <instance> <sequence>", "disconnect <reason>".
const { io } = require('socket.io-client');

const [url, apikey, mode, countArg, ...events] = process.argv.slice(2);
const count = Number(countArg || 0);
const options = { transports: ['websocket'], reconnection: false };
if (mode === 'query') options.query = { apikey };
if (mode === 'auth') options.auth = { apikey };

const socket = io(url, options);
let seen = 0;
const onEvent = (name, envelope) => {
  console.log(`event ${name} ${envelope.instance} ${envelope.sequence}`);
  seen += 1;
  if (count > 0 && seen >= count) {
    socket.disconnect();
    process.exit(0);
  }
};
if (events.length > 0) {
  for (const name of events) socket.on(name, (envelope) => onEvent(name, envelope));
} else {
  socket.onAny(onEvent);
}
socket.on('connect', () => console.log('connected'));
socket.on('connect_error', (err) => {
  console.log(`connect_error ${err.message}`);
  process.exit(2);
});
socket.on('disconnect', (reason) => console.log(`disconnect ${reason}`));
