/**
 * The adapter registry: tenants' adapters addressed by name, loaded on first use, kept within a
 * memory budget (bytes of adapter tensors), least-recently-used idle adapters evicted, loaded
 * and unloaded at runtime. Universal: where adapters come from is an `AdapterSource` (the Node
 * entry has one for a directory of PEFT adapter directories, `directorySource`).
 *
 * A request holds a lease (`acquire` → `release`) for as long as it runs, so an adapter in use
 * is never evicted or unloaded under it (an unload waits for its last lease). Loading is async
 * (file reads, tensor creation) and shared by concurrent requests for the same name; the engine
 * keeps decoding other tenants meanwhile.
 */

import type { AnyAdapter } from '@para/adapters';
import { ParaError } from '@para/core';
import type { CausalLM } from '@para/model';

/** Adapter names: letters, digits, `.`, `_`, `-`; starts with a letter or digit; ≤ 128 chars; no `..`. */
export const ADAPTER_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** Throws INVALID_ARGUMENT (field `field`) unless `name` is a valid adapter name. */
export function checkAdapterName(name: unknown, field = 'model'): string {
  if (typeof name !== 'string' || !ADAPTER_NAME_PATTERN.test(name) || name.includes('..')) {
    throw new ParaError('INVALID_ARGUMENT', 'not a valid adapter name', {
      field,
      expected:
        'letters, digits, ".", "_" and "-" (starting with a letter or digit, no "..", at most 128 characters)',
      actual: JSON.stringify(typeof name === 'string' ? name.slice(0, 200) : typeof name),
    });
  }
  return name;
}

export interface AdapterSource {
  /** Names of the adapters available (valid names only). */
  list(): Promise<string[]>;
  /** The adapter's `peft_type` without loading its weights (null if unreadable). */
  peftType(name: string): Promise<string | null>;
  /** Loads and validates the adapter for `model`; FILE_NOT_FOUND when there is no such adapter. */
  load(name: string, model: CausalLM): Promise<AnyAdapter>;
  /** Stores a new adapter under `name` (uploads); absent: the source is read-only. */
  save?(name: string, adapter: AnyAdapter): Promise<void>;
}

export interface RegistryOptions {
  /** Bytes of adapter tensors kept loaded at most (default 1 GiB). */
  maxBytes?: number;
}

export interface AdapterInfo {
  name: string;
  peftType: string | null;
  loaded: boolean;
  bytes: number;
  inUse: number;
}

export interface RegistryStats {
  loaded: number;
  bytes: number;
  maxBytes: number;
  hits: number;
  loads: number;
  evictions: number;
}

export interface AdapterLease {
  adapter: AnyAdapter;
  release(): void;
}

interface Entry {
  name: string;
  adapter: AnyAdapter | null;
  loading: Promise<AnyAdapter> | null;
  bytes: number;
  refs: number;
  lastUsed: number;
  unloadWhenIdle: boolean;
}

/** Bytes of an adapter's tensors. */
export function adapterBytes(adapter: AnyAdapter): number {
  let n = 0;
  for (const v of adapter.namedParameters().values()) n += v.size * 4;
  return n;
}

export class AdapterRegistry {
  readonly maxBytes: number;
  private readonly entries = new Map<string, Entry>();
  private clock = 0;
  private hits = 0;
  private loads = 0;
  private evictions = 0;

  constructor(
    readonly model: CausalLM,
    readonly source: AdapterSource,
    options: RegistryOptions = {},
  ) {
    const m = options.maxBytes ?? 1024 ** 3;
    if (typeof m !== 'number' || !(m > 0)) {
      throw new ParaError('INVALID_ARGUMENT', 'maxBytes must be a positive number', {
        field: 'maxBytes',
        actual: String(m),
      });
    }
    this.maxBytes = m;
  }

  stats(): RegistryStats {
    let loaded = 0;
    let bytes = 0;
    for (const e of this.entries.values()) {
      if (e.adapter !== null) {
        loaded++;
        bytes += e.bytes;
      }
    }
    return {
      loaded,
      bytes,
      maxBytes: this.maxBytes,
      hits: this.hits,
      loads: this.loads,
      evictions: this.evictions,
    };
  }

  /** Every adapter of the source, loaded or not. */
  async list(): Promise<AdapterInfo[]> {
    const names = new Set(await this.source.list());
    for (const [n, e] of this.entries) if (e.adapter !== null) names.add(n);
    const out: AdapterInfo[] = [];
    for (const name of [...names].sort()) {
      const e = this.entries.get(name);
      const peftType = e?.adapter ? e.adapter.peftType : await this.source.peftType(name);
      out.push({
        name,
        peftType,
        loaded: e?.adapter != null,
        bytes: e?.bytes ?? 0,
        inUse: e?.refs ?? 0,
      });
    }
    return out;
  }

  isLoaded(name: string): boolean {
    return this.entries.get(name)?.adapter != null;
  }

  /** Loads `name` if needed and holds it until `release()`. */
  async acquire(name: string): Promise<AdapterLease> {
    checkAdapterName(name);
    const e = this.entry(name);
    e.refs++;
    try {
      const adapter = await this.ensureLoaded(e);
      e.lastUsed = ++this.clock;
      let released = false;
      return {
        adapter,
        release: () => {
          if (released) return;
          released = true;
          this.unref(e);
        },
      };
    } catch (err) {
      this.unref(e);
      throw err;
    }
  }

  /** Loads `name` now (no lease held). */
  async load(name: string): Promise<AdapterInfo> {
    const lease = await this.acquire(name);
    lease.release();
    const e = this.entries.get(name) as Entry;
    return {
      name,
      peftType: lease.adapter.peftType,
      loaded: true,
      bytes: e.bytes,
      inUse: e.refs,
    };
  }

  /**
   * Adds a new adapter (an upload, validated by the caller against the model): stored through
   * the source (`save`; UNSUPPORTED when the source has none) and kept loaded. INVALID_ARGUMENT
   * when the name is taken.
   */
  async install(name: string, adapter: AnyAdapter): Promise<AdapterInfo> {
    checkAdapterName(name, 'name');
    if (this.source.save === undefined) {
      throw new ParaError('UNSUPPORTED', 'this server’s adapters cannot be uploaded', {
        field: 'name',
      });
    }
    const taken = this.entries.has(name) || (await this.source.list()).includes(name);
    if (taken) {
      throw new ParaError('INVALID_ARGUMENT', `an adapter named ${JSON.stringify(name)} exists`, {
        field: 'name',
        expected: 'a new name (DELETE unloads an adapter; it does not remove its files)',
      });
    }
    const bytes = adapterBytes(adapter);
    if (bytes > this.maxBytes) {
      throw new ParaError(
        'LIMIT_EXCEEDED',
        'the adapter is larger than the adapter memory budget',
        {
          field: 'adapter_model',
          expected: `≤ ${this.maxBytes} bytes of adapter tensors`,
          actual: `${bytes} bytes`,
        },
      );
    }
    await this.source.save(name, adapter);
    const e = this.entry(name);
    e.adapter = adapter;
    e.bytes = bytes;
    e.lastUsed = ++this.clock;
    this.loads++;
    this.evict(e);
    return { name, peftType: adapter.peftType, loaded: true, bytes, inUse: 0 };
  }

  /** Frees `name`'s tensors (at once if idle, else when its last request ends). False if not loaded. */
  unload(name: string): boolean {
    checkAdapterName(name);
    const e = this.entries.get(name);
    if (e === undefined || (e.adapter === null && e.loading === null)) return false;
    if (e.refs > 0 || e.loading !== null) e.unloadWhenIdle = true;
    else this.drop(e);
    return true;
  }

  /** Frees every loaded adapter (requests still holding leases keep theirs until release). */
  dispose(): void {
    for (const e of [...this.entries.values()]) {
      if (e.refs > 0 || e.loading !== null) e.unloadWhenIdle = true;
      else this.drop(e);
    }
  }

  private entry(name: string): Entry {
    let e = this.entries.get(name);
    if (e === undefined) {
      e = {
        name,
        adapter: null,
        loading: null,
        bytes: 0,
        refs: 0,
        lastUsed: 0,
        unloadWhenIdle: false,
      };
      this.entries.set(name, e);
    }
    return e;
  }

  private async ensureLoaded(e: Entry): Promise<AnyAdapter> {
    if (e.adapter !== null) {
      this.hits++;
      return e.adapter;
    }
    if (e.loading === null) {
      e.loading = (async () => {
        const adapter = await this.source.load(e.name, this.model);
        const bytes = adapterBytes(adapter);
        if (bytes > this.maxBytes) {
          adapter.dispose();
          throw new ParaError(
            'LIMIT_EXCEEDED',
            'the adapter is larger than the adapter memory budget',
            {
              field: 'model',
              expected: `≤ ${this.maxBytes} bytes of adapter tensors (--max-adapter-memory)`,
              actual: `${bytes} bytes`,
            },
          );
        }
        this.loads++;
        e.adapter = adapter;
        e.bytes = bytes;
        return adapter;
      })();
      e.loading
        .finally(() => {
          e.loading = null;
          this.evict(e);
        })
        .catch(() => undefined);
    }
    return e.loading;
  }

  private unref(e: Entry): void {
    e.refs = Math.max(0, e.refs - 1);
    if (e.refs === 0) {
      if (e.unloadWhenIdle) this.drop(e);
      else if (e.adapter === null && e.loading === null) this.entries.delete(e.name);
      this.evict(null);
    }
  }

  private drop(e: Entry): void {
    e.adapter?.dispose();
    e.adapter = null;
    e.bytes = 0;
    e.unloadWhenIdle = false;
    this.entries.delete(e.name);
  }

  /** Evicts least-recently-used idle adapters (never `keep`) while over the budget. */
  private evict(keep: Entry | null): void {
    let total = 0;
    for (const e of this.entries.values()) total += e.adapter !== null ? e.bytes : 0;
    if (total <= this.maxBytes) return;
    const idle = [...this.entries.values()]
      .filter((e) => e !== keep && e.adapter !== null && e.refs === 0 && e.loading === null)
      .sort((a, b) => a.lastUsed - b.lastUsed);
    for (const e of idle) {
      if (total <= this.maxBytes) break;
      total -= e.bytes;
      this.drop(e);
      this.evictions++;
    }
  }
}

/**
 * A source of adapters made in memory (tests, a browser app): each load calls the name's factory,
 * and the registry disposes what it evicts or unloads.
 */
export function memorySource(
  adapters: Record<string, () => AnyAdapter | Promise<AnyAdapter>>,
): AdapterSource {
  return {
    list: async () => Object.keys(adapters).filter((n) => ADAPTER_NAME_PATTERN.test(n)),
    peftType: async () => null,
    load: async (name) => {
      const make = Object.hasOwn(adapters, name) ? adapters[name] : undefined;
      if (make === undefined) {
        throw new ParaError('FILE_NOT_FOUND', `no adapter named ${JSON.stringify(name)}`, {
          field: 'model',
        });
      }
      return make();
    },
  };
}
