// A central system written by others, for forward mode's integration tests
// (tests/integration/test_forward_ocpp_rpc.py): npm's ocpp-rpc RPCServer in
// strict mode (schemas of OCPP 1.6 and 2.0.1 checked both ways).
//
//   node csms.js PORT [CERT KEY]   (with CERT and KEY: wss, else ws)
//
// One JSON line on stdout per event: {"event": "listening"}, "connected"
// (identity, protocol, password, authorization), "call" (identity, method,
// params), "result" and "error" of its own calls, "invalid" (a
// strictValidationFailure), "closed".  A line on stdin {"identity",
// "method", "params"} makes it call that charge point.  Identities starting
// with REJECT401 / REJECT404 are refused with that status.
'use strict';
const fs = require('fs');
const http = require('http');
const https = require('https');
const readline = require('readline');
const { RPCServer } = require('ocpp-rpc');

const [port, cert, key] = process.argv.slice(2);
const say = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');
const now = () => new Date().toISOString();

const server = new RPCServer({ protocols: ['ocpp2.0.1', 'ocpp1.6'], strictMode: true });
const clients = new Map();

server.auth((accept, reject, handshake) => {
    const refused = /^REJECT(\d{3})/.exec(handshake.identity);
    if (refused) {
        reject(Number(refused[1]), 'refused by the central system');
        return;
    }
    accept({
        password: handshake.password ? handshake.password.toString('utf8') : null,
        authorization: handshake.headers.authorization || null,
    });
});

server.on('client', (client) => {
    clients.set(client.identity, client);
    say({ event: 'connected', identity: client.identity, protocol: client.protocol,
          password: client.session.password, authorization: client.session.authorization });
    client.on('strictValidationFailure', (e) => say({ event: 'invalid', identity: client.identity,
                                                      message: String(e.error && e.error.message) }));
    client.on('close', ({ code }) => say({ event: 'closed', identity: client.identity, code }));
    const record = (method, answer) => client.handle(method, ({ params }) => {
        say({ event: 'call', identity: client.identity, method, params });
        return answer(params);
    });
    record('BootNotification', () => ({ status: 'Accepted', interval: 300, currentTime: now() }));
    record('Heartbeat', () => ({ currentTime: now() }));
    record('StatusNotification', () => ({}));
    record('MeterValues', () => ({}));
    if (client.protocol === 'ocpp1.6') {
        record('Authorize', () => ({ idTagInfo: { status: 'Accepted' } }));
        record('StartTransaction', () => ({ transactionId: 42, idTagInfo: { status: 'Accepted' } }));
        record('StopTransaction', () => ({ idTagInfo: { status: 'Accepted' } }));
    } else {
        record('Authorize', () => ({ idTokenInfo: { status: 'Accepted' } }));
        record('TransactionEvent', () => ({}));
    }
});

readline.createInterface({ input: process.stdin }).on('line', async (line) => {
    const { identity, method, params } = JSON.parse(line);
    const client = clients.get(identity);
    try {
        const result = await client.call(method, params);
        say({ event: 'result', identity, method, result });
    } catch (e) {
        say({ event: 'error', identity, method, message: String(e.message) });
    }
});

const web = cert
    ? https.createServer({ cert: fs.readFileSync(cert), key: fs.readFileSync(key) })
    : http.createServer();
web.on('upgrade', server.handleUpgrade);
web.listen(Number(port), '127.0.0.1', () => say({ event: 'listening' }));
