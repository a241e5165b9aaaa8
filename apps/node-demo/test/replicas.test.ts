/**
 * Scale-out on loopback: two `para serve` replicas (the built CLI, bundled backbone and adapters,
 * an API key) behind Debian's nginx running the shipped deploy/nginx.conf (only its replica list,
 * listen port, log and temp paths and worker count replaced). Through the balancer, with the real
 * `openai` client sending `X-Para-Adapter`: every bundled adapter and the bare model answer, non-
 * streamed and streamed, with the text a replica gives directly; routing is sticky (each
 * request's replica is found from the replicas' own /metrics request counters, and cross-checked
 * in nginx's access log); each replica loads an adapter once. Without the header requests still
 * succeed and are spread round-robin; the Authorization header passes through; nginx's own errors
 * (413, 502) are OpenAI error JSON.
 *
 * Skipped when /usr/sbin/nginx is absent (`apt-get install nginx`), unless PARA_NGINX_REQUIRED=1
 * (CI): then it fails.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cli, repo } from './helpers/cli';

const NGINX = '/usr/sbin/nginx';
const haveNginx = existsSync(NGINX);
const nginxRequired = process.env.PARA_NGINX_REQUIRED === '1';
const KEY = 'replica-test-key';
const PROMPT = 'Opposite of hot:';
const MAX_TOKENS = 8;

/** The bundled adapters: the directories of assets/adapters holding an adapter_config.json. */
const adaptersRoot = join(repo, 'assets', 'adapters');
const BUNDLED = readdirSync(adaptersRoot, { withFileTypes: true })
  .filter((d) => d.isDirectory() && existsSync(join(adaptersRoot, d.name, 'adapter_config.json')))
  .map((d) => d.name)
  .sort();

interface Proc {
  child: ChildProcess;
  name: string;
  exit: Promise<number | null>;
  stderr: () => string;
}

const procs: Proc[] = [];

function track(child: ChildProcess, name: string): Proc {
  let err = '';
  child.stderr?.on('data', (d) => {
    err = (err + String(d)).slice(-20_000);
  });
  const exit = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  const p = { child, name, exit, stderr: () => err };
  procs.push(p);
  return p;
}

const running = (c: ChildProcess) => c.exitCode === null && c.signalCode === null;

/** Sends `signal`, then SIGKILL (to the process group for nginx) if it has not exited in time. */
async function stop(p: Proc, signal: NodeJS.Signals, group = false): Promise<void> {
  if (!running(p.child)) return;
  p.child.kill(signal);
  const exited = await Promise.race([
    p.exit.then(() => true),
    new Promise<false>((r) => setTimeout(() => r(false), 20_000)),
  ]);
  if (!exited || group) {
    try {
      if (group && p.child.pid !== undefined) process.kill(-p.child.pid, 'SIGKILL');
      else p.child.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
}

interface Replica extends Proc {
  url: string;
}

/** Starts `para serve --port 0 …` and resolves once it prints its URL. */
function replica(name: string): Promise<Replica> {
  const child = spawn(
    process.execPath,
    [cli, 'serve', '--port', '0', '--api-key', KEY, '--log-level', 'warn'],
    { env: { ...process.env, PARA_BACKEND: 'wasm' }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const p = track(child, name);
  let out = '';
  return new Promise((resolve, reject) => {
    child.stdout?.on('data', (d) => {
      out += String(d);
      const m = /on (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
      if (m && out.includes('Ctrl-C')) resolve({ ...p, url: m[1] as string });
    });
    p.exit.then((code) => reject(new Error(`${name} exited (${code}): ${p.stderr()}`)));
  });
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => (typeof a === 'object' && a !== null ? resolve(a.port) : reject(new Error())));
    });
  });
}

/** `text` with `from` replaced by `to`, which must occur exactly once (else the test is stale). */
function replaceOnce(text: string, from: string | RegExp, to: string): string {
  const n =
    typeof from === 'string'
      ? text.split(from).length - 1
      : (text.match(new RegExp(from.source, 'g')) ?? []).length;
  if (n !== 1) throw new Error(`deploy/nginx.conf: expected ${String(from)} once, found ${n}`);
  return text.replace(from, () => to);
}

/** deploy/nginx.conf for this test: these replicas, this port, every path inside `dir`. */
function testConf(dir: string, replicas: readonly string[], port: number): string {
  let c = readFileSync(join(repo, 'deploy', 'nginx.conf'), 'utf8');
  // One worker: the round-robin fallback (no header) is per worker, and the test counts it.
  c = replaceOnce(c, 'worker_processes auto;', 'worker_processes 1;');
  c = replaceOnce(
    c,
    'error_log /var/log/nginx/error.log warn;',
    `error_log ${dir}/error.log warn;`,
  );
  const temp = ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']
    .map((t) => `    ${t}_temp_path ${dir}/${t}_temp;\n`)
    .join('');
  c = replaceOnce(
    c,
    'access_log /var/log/nginx/para.access.log para;',
    `access_log ${dir}/access.log para;\n${temp}`,
  );
  c = replaceOnce(
    c,
    /# para replicas: begin[^\n]*\n[\s\S]*?# para replicas: end/,
    [
      '# para replicas: begin (the test)',
      ...replicas.map((r) => `        server ${r} max_fails=3 fail_timeout=10s;`),
      '        # para replicas: end',
    ].join('\n'),
  );
  c = replaceOnce(c, 'listen 8080;', `listen 127.0.0.1:${port};`);
  if (c.includes('/var/')) throw new Error('the test config still names a path outside its dir');
  return c;
}

/** Starts nginx on a free port (a few tries: the port is free when chosen, not when bound). */
async function startNginx(
  dir: string,
  replicas: readonly string[],
): Promise<{ p: Proc; url: string }> {
  let last = '';
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    const conf = join(dir, 'nginx.conf');
    writeFileSync(conf, testConf(dir, replicas, port));
    const child = spawn(NGINX, ['-p', dir, '-c', conf, '-g', `daemon off; pid ${dir}/nginx.pid;`], {
      stdio: ['ignore', 'ignore', 'pipe'],
      detached: true,
    });
    const p = track(child, 'nginx');
    const url = `http://127.0.0.1:${port}`;
    const deadline = Date.now() + 60_000;
    while (running(child) && Date.now() < deadline) {
      try {
        if ((await fetch(`${url}/health`)).status === 200) return { p, url };
      } catch {
        // not listening yet
      }
      await new Promise((r) => setTimeout(r, 200));
    }
    const log = existsSync(join(dir, 'error.log'))
      ? readFileSync(join(dir, 'error.log'), 'utf8')
      : '';
    last = `${p.stderr()}\n${log}`;
    await stop(p, 'SIGTERM', true);
    if (!/Address already in use/.test(last)) break;
  }
  throw new Error(`nginx did not start: ${last}`);
}

/** Sum of para_requests_total (every endpoint and outcome) on a replica. */
async function requestsServed(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  let n = 0;
  for (const m of text.matchAll(/^para_requests_total\{[^}]*\} (\d+)$/gm)) n += Number(m[1]);
  return n;
}

async function adapterLoads(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  return Number(/^para_adapter_cache_loads_total (\d+)$/m.exec(text)?.[1] ?? Number.NaN);
}

async function completeText(client: OpenAI, model: string, headers?: Record<string, string>) {
  const r = await client.completions.create(
    { model, prompt: PROMPT, max_tokens: MAX_TOKENS, temperature: 0 },
    headers === undefined ? {} : { headers },
  );
  return r.choices[0]?.text;
}

async function streamText(client: OpenAI, model: string, headers?: Record<string, string>) {
  const s = await client.completions.create(
    { model, prompt: PROMPT, max_tokens: MAX_TOKENS, temperature: 0, stream: true },
    headers === undefined ? {} : { headers },
  );
  let text = '';
  let chunks = 0;
  for await (const c of s) {
    chunks++;
    text += c.choices[0]?.text ?? '';
  }
  return { text, chunks };
}

const openai = (baseURL: string, defaultHeaders?: Record<string, string>) =>
  new OpenAI({
    baseURL: `${baseURL}/v1`,
    apiKey: KEY,
    maxRetries: 0,
    timeout: 120_000,
    ...(defaultHeaders === undefined ? {} : { defaultHeaders }),
  });

const skipNote = haveNginx
  ? ''
  : ` (skipped: ${NGINX} not found; apt-get install nginx, or PARA_NGINX_REQUIRED=1 to fail)`;
if (!haveNginx && !nginxRequired) console.warn(`replicas.test.ts${skipNote}`);

if (!haveNginx && nginxRequired) {
  describe('scale-out prerequisites', () => {
    it('nginx is installed (PARA_NGINX_REQUIRED=1)', () => {
      throw new Error(`PARA_NGINX_REQUIRED=1 but ${NGINX} is missing: apt-get install nginx`);
    });
  });
}

describe.skipIf(!haveNginx)(
  `two para serve replicas behind nginx (deploy/nginx.conf)${skipNote}`,
  () => {
    let dir = '';
    let replicas: Replica[] = [];
    let nginx: Proc | null = null;
    let lb = '';
    let base = '';
    /** The replica (index) that served each model through the balancer. */
    const routes = new Map<string, Set<number>>();

    beforeAll(async () => {
      dir = mkdtempSync(join(tmpdir(), 'para-nginx-'));
      // Run as root, nginx's workers drop to nobody: they must reach the temp paths in `dir`.
      chmodSync(dir, 0o755);
      replicas = await Promise.all([replica('replica 0'), replica('replica 1')]);
      const started = await startNginx(
        dir,
        replicas.map((r) => r.url.replace('http://', '')),
      );
      nginx = started.p;
      lb = started.url;
      const models = await openai(replicas[0]?.url as string).models.list();
      base = (models.data as unknown as { id: string; parent: string | null }[]).find(
        (m) => m.parent === null,
      )?.id as string;
    }, 300_000);

    afterAll(async () => {
      // Every process this file started, even after a failure: nginx first, then the replicas.
      if (nginx !== null) await stop(nginx, 'SIGTERM', true);
      await Promise.all(procs.filter((p) => p !== nginx).map((p) => stop(p, 'SIGTERM')));
      if (dir !== '') rmSync(dir, { recursive: true, force: true });
    }, 120_000);

    it('every bundled adapter and the bare model, streamed and not, answer through the balancer as directly; routing is sticky', async () => {
      expect(BUNDLED.length).toBeGreaterThan(0);
      expect(base).toBe('backbone');
      const models = [base, ...BUNDLED];
      const [r0, r1] = replicas as [Replica, Replica];
      // Directly to replica 0 (the reference text; it loads every adapter once).
      const direct = openai(r0.url);
      const want = new Map<string, string>();
      for (const m of models) {
        const text = await completeText(direct, m);
        expect(typeof text).toBe('string');
        expect((await streamText(direct, m)).text).toBe(text);
        want.set(m, text as string);
      }
      expect(await adapterLoads(r0.url)).toBe(BUNDLED.length);
      expect(await adapterLoads(r1.url)).toBe(0);

      let counts = [await requestsServed(r0.url), await requestsServed(r1.url)];
      /** Which replica served the one request `run` made (exactly one counter moved by one). */
      const servedBy = async (run: () => Promise<void>): Promise<number> => {
        await run();
        const now = [await requestsServed(r0.url), await requestsServed(r1.url)];
        const delta = now.map((n, i) => n - (counts[i] as number));
        counts = now;
        expect([
          [1, 0],
          [0, 1],
        ]).toContainEqual(delta);
        return delta[0] === 1 ? 0 : 1;
      };

      for (let round = 0; round < 2; round++) {
        for (const m of models) {
          const header = { 'X-Para-Adapter': m };
          const seen = routes.get(m) ?? new Set<number>();
          routes.set(m, seen);
          // The header as the README says: a client's defaultHeaders, or per request.
          const viaDefault = openai(lb, header);
          seen.add(
            await servedBy(async () => {
              expect(await completeText(viaDefault, m)).toBe(want.get(m));
            }),
          );
          seen.add(
            await servedBy(async () => {
              const s = await streamText(openai(lb), m, header);
              expect(s.text).toBe(want.get(m));
              expect(s.chunks).toBeGreaterThan(1);
            }),
          );
        }
      }
      // Sticky: each model always reached one replica.
      for (const m of models) expect([...(routes.get(m) ?? [])], m).toHaveLength(1);
      // Warm caches: replica 1 loaded each adapter routed to it once (four requests each), and
      // replica 0 loaded none again.
      const onReplica1 = BUNDLED.filter((m) => routes.get(m)?.has(1)).length;
      expect(await adapterLoads(r1.url)).toBe(onReplica1);
      expect(await adapterLoads(r0.url)).toBe(BUNDLED.length);

      // nginx's access log says the same: one upstream per adapter header, the metrics' replica.
      const log = readFileSync(join(dir, 'access.log'), 'utf8');
      const upstreams = new Map<string, Set<string>>();
      for (const m of log.matchAll(
        /"POST \/v1\/completions[^"]*" 200 .*adapter="([^"]+)" upstream=(\S+)/g,
      )) {
        const set = upstreams.get(m[1] as string) ?? new Set<string>();
        set.add(m[2] as string);
        upstreams.set(m[1] as string, set);
      }
      for (const m of models) {
        const replicaIndex = [...(routes.get(m) ?? [])][0] as number;
        expect([...(upstreams.get(m) ?? [])], m).toEqual([
          (replicas[replicaIndex] as Replica).url.replace('http://', ''),
        ]);
      }
    });

    it('without X-Para-Adapter requests still succeed, spread round-robin over the replicas', async () => {
      const [r0, r1] = replicas as [Replica, Replica];
      const name = BUNDLED[0] as string;
      const want = await completeText(openai(r0.url), name);
      const before = [await requestsServed(r0.url), await requestsServed(r1.url)];
      const client = openai(lb);
      for (let i = 0; i < 4; i++) {
        expect(await completeText(client, name)).toBe(want);
        expect((await streamText(client, name)).text).toBe(want);
      }
      const after = [await requestsServed(r0.url), await requestsServed(r1.url)];
      const delta = after.map((n, i) => n - (before[i] as number));
      expect((delta[0] as number) + (delta[1] as number)).toBe(8);
      expect(delta[0]).toBeGreaterThan(0);
      expect(delta[1]).toBeGreaterThan(0);
    });

    it('Authorization and X-Para-Adapter pass through; nginx’s own errors are OpenAI error JSON', async () => {
      const body = { model: base, prompt: PROMPT, max_tokens: 2, temperature: 0 };
      const post = (headers: Record<string, string>, payload: string = JSON.stringify(body)) =>
        fetch(`${lb}/v1/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-para-adapter': base, ...headers },
          body: payload,
        });
      // The replicas check the key the client sent, through nginx.
      const noKey = await post({});
      expect(noKey.status).toBe(401);
      expect(((await noKey.json()) as { error: { code: string } }).error.code).toBe(
        'invalid_api_key',
      );
      const ok = await post({ authorization: `Bearer ${KEY}` });
      expect(ok.status).toBe(200);
      // A header that names another model than the body is the replica's 400.
      const mismatch = await post({
        authorization: `Bearer ${KEY}`,
        'x-para-adapter': BUNDLED[0] as string,
      });
      expect(mismatch.status).toBe(400);
      expect(((await mismatch.json()) as { error: { code: string } }).error.code).toBe(
        'adapter_header_mismatch',
      );
      // Over client_max_body_size (1 MiB, as the server's body limit): nginx's 413, as JSON.
      const big = await post(
        { authorization: `Bearer ${KEY}` },
        JSON.stringify({ ...body, prompt: 'x'.repeat(1024 * 1024 + 1) }),
      );
      expect(big.status).toBe(413);
      expect(big.headers.get('content-type')).toContain('application/json');
      expect(((await big.json()) as { error: { code: string } }).error.code).toBe(
        'request_too_large',
      );
      // Every replica stopped (SIGTERM: each exits 0): nginx's 502, as JSON.
      for (const r of replicas) r.child.kill('SIGTERM');
      for (const r of replicas) expect(await r.exit).toBe(0);
      const down = await post({ authorization: `Bearer ${KEY}` });
      expect(down.status).toBe(502);
      expect(
        ((await down.json()) as { error: { type: string; code: string } }).error,
      ).toMatchObject({
        type: 'server_error',
        code: 'bad_gateway',
      });
    });
  },
);
