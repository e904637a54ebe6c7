// The old bridge's side of the memory benchmark (sessions_rss.rs): N logged-in
// Baileys sockets in this one Node process, against the loopback simulator,
// each on its own multi-file auth folder as the old bridge kept them.
//
//   node baileys_peer.mjs <ws url> <count> <scratch dir> [first device]
//
// Session i lives in <scratch dir>/session-<i>. A folder that already has a
// creds.json is used as it is (a session from an earlier run: the bench
// prepares the folders once, then measures on them, as wabridge is measured on
// sessions paired beforehand); otherwise fresh creds are written, as a device
// that finished linking would have them, and such fresh sessions log in one
// after another (see the end of this file). Session i is device <first device> + i
// (default 1) of its own number: the bench asks the simulator for device
// numbers it never hands out, so the pre-keys the simulator keeps per device do
// not mix with those of the wabridge sessions.
//
// stdout, one line each: `open <i>` when socket i reaches 'open', `ALL OPEN`
// once every one did, `close <i> <status> <message>` when one closes. A closed
// socket is not reconnected (the bench reports it as a failure). It then idles
// until it is killed. BAILEYS_PEER_LOG=<pino level> logs Baileys to stderr.
//
// Messages people send the sessions are handled as the old bridge needed them
// for its webhook, and counted: `received <texts> <undecryptable>` (all
// sockets together) at most twice a second while the counts change. The old
// bridge's payload names the group (`groupName`, shared/design.md §5), which
// Baileys only knows from the group's metadata: as wabridge does, each socket
// asks for it (`groupMetadata`) on a group's first message and keeps it; a
// message counts once that is done.

import { join } from 'node:path';
import { existsSync } from 'node:fs';
import pino from 'pino';
import makeWASocket, { makeCacheableSignalKeyStore, proto, useMultiFileAuthState } from 'baileys';

const [url, countArg, scratch, firstDeviceArg] = process.argv.slice(2);
const count = Number(countArg);
const firstDevice = Number(firstDeviceArg ?? 1);
if (!url || !scratch || !Number.isInteger(count) || count < 0 || !Number.isInteger(firstDevice)) {
    console.error('usage: node baileys_peer.mjs <ws url> <count> <scratch dir> [first device]');
    process.exit(2);
}

const logger = pino({ level: process.env.BAILEYS_PEER_LOG || 'silent' }, pino.destination(2));

// Numbers that cannot be anyone's: each session is its own account.
const phone = (i) => `1555800${String(i).padStart(4, '0')}`;

async function authFolder(i) {
    const folder = join(scratch, `session-${i}`);
    const fresh = !existsSync(join(folder, 'creds.json'));
    const { state, saveCreds } = await useMultiFileAuthState(folder);
    if (fresh) {
        // useMultiFileAuthState made them with initAuthCreds(); `me` and
        // `registered` make them a linked device's.
        Object.assign(state.creds, {
            me: { id: `${phone(i)}:${firstDevice + i}@s.whatsapp.net`, name: `Baileys peer ${i}` },
            registered: true,
            // A session that has run before: it did its first history sync,
            // so it does not hold its events back 20 s waiting for one.
            accountSyncCounter: 1,
        });
        await saveCreds();
    }
    return { state, saveCreds, fresh };
}

let texts = 0;
let undecryptable = 0;
let reportDue = false;
function countReceived(undecrypted) {
    if (undecrypted) undecryptable += 1;
    else texts += 1;
    if (reportDue) return;
    reportDue = true;
    setTimeout(() => {
        reportDue = false;
        console.log(`received ${texts} ${undecryptable}`);
    }, 500);
}

/** Counts the people's messages socket `sock` receives (see the top). */
function countMessages(sock) {
    const groups = new Map();
    sock.ev.on('messages.upsert', async ({ messages }) => {
        for (const m of messages) {
            if (m.key.fromMe) continue;
            const text = m.message?.conversation ?? m.message?.extendedTextMessage?.text;
            const undecrypted = m.messageStubType === proto.WebMessageInfo.StubType.CIPHERTEXT;
            if (text === undefined && !undecrypted) continue; // protocol messages
            const jid = m.key.remoteJid;
            if (jid?.endsWith('@g.us')) {
                if (!groups.has(jid)) groups.set(jid, sock.groupMetadata(jid).catch(() => null));
                await groups.get(jid);
            }
            countReceived(undecrypted);
        }
    });
}

let open = 0;
/** Starts socket i; resolves when it is open or closed. */
function connect(i, { state, saveCreds }) {
    const sock = makeWASocket({
        waWebSocketUrl: url,
        auth: { creds: state.creds, keys: makeCacheableSignalKeyStore(state.keys, logger) },
        logger,
        printQRInTerminal: false,
        markOnlineOnConnect: false,
        syncFullHistory: false,
    });
    // Saves in order, and `open` is printed only once the creds this login
    // changed (pre-key counters) are on disk: the bench may kill us then.
    let saving = Promise.resolve();
    sock.ev.on('creds.update', () => {
        saving = saving.then(saveCreds, saveCreds);
    });
    countMessages(sock);
    return new Promise((settled) => {
        let opened = false;
        sock.ev.on('connection.update', async ({ connection, lastDisconnect }) => {
            if (connection === 'open' && !opened) {
                opened = true;
                await saving.catch(() => {});
                console.log(`open ${i}`);
                open += 1;
                if (open === count) console.log('ALL OPEN');
                settled();
            } else if (connection === 'close') {
                const error = lastDisconnect?.error;
                const status = error?.output?.statusCode ?? '-';
                console.log(`close ${i} ${status} ${error?.message ?? 'closed'}`);
                settled();
            }
        });
    });
}

const folders = await Promise.all(Array.from({ length: count }, (_, i) => authFolder(i)));
if (count === 0) console.log('ALL OPEN');
for (const [i, folder] of folders.entries()) {
    const opening = connect(i, folder);
    // A fresh device's first login generates and uploads 812 pre-keys:
    // Baileys doing that for many sockets at once takes superlinear time and
    // memory (20 at once peaked near 770 MB, 100 ran out of heap), and the
    // old bridge's devices were linked one by one anyway. Sessions that have
    // logged in before all start together.
    if (folder.fresh) await opening;
}
// Idle: the sockets' timers keep Node running until it is killed.
setInterval(() => {}, 1 << 30);
