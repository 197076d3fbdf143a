// `sync N` lines on stdin make a test server log {"event":"sync","n":N}
// after everything it logged before: the test then knows it has read the
// server's log up to that point. Not on a terminal (a server started by hand
// must not stop on SIGTTIN).
export function answerSyncs(log) {
  if (process.stdin.isTTY) return;
  let pending = '';
  process.stdin.on('data', (chunk) => {
    pending += chunk;
    const lines = pending.split('\n');
    pending = lines.pop();
    for (const line of lines) {
      const n = /^sync (\d+)$/.exec(line.trim())?.[1];
      if (n) log({ event: 'sync', n: Number(n) });
    }
  });
}
