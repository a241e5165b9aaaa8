/**
 * Prometheus metrics of a server (prom-client, one registry per server, served at GET /metrics):
 *
 *   para_requests_running / para_requests_waiting          gauges (the engine, at scrape time)
 *   para_requests_total{endpoint, outcome}                 outcome: stop | length | cancelled |
 *                                                          timeout | error
 *   para_prompt_tokens_total, para_generated_tokens_total  counters (tokens/s = rate() of these)
 *   para_time_to_first_token_seconds                       histogram, submission → first token
 *   para_inter_token_latency_seconds                       histogram, between a request's tokens
 *   para_request_duration_seconds{endpoint}                histogram, submission → end
 *   para_adapter_cache_{hits,loads,evictions}_total        the registry's counters
 *   para_adapters_loaded, para_adapter_bytes               gauges
 *   para_fine_tuning_jobs{status}                          gauge: jobs by status (with fine-tuning)
 *   process_* / nodejs_*                                   prom-client's default metrics (RSS, …)
 *
 * No per-adapter labels: tenants can be many (label cardinality); the model is in the logs.
 */

import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { Engine, EngineFinishReason } from '../engine';
import type { AdapterRegistry } from '../registry';

export interface RequestMetrics {
  /** Call on every new token. */
  token(): void;
  /** Call once when the request ends. */
  end(outcome: EngineFinishReason | 'error', promptTokens: number, completionTokens: number): void;
}

export interface ServerMetrics {
  register: Registry;
  begin(endpoint: 'completions' | 'chat'): RequestMetrics;
}

const now = (): number => performance.now() / 1000;

export function createMetrics(
  engine: Engine,
  registry: AdapterRegistry | null,
  jobCounts?: () => Record<string, number>,
): ServerMetrics {
  const register = new Registry();
  collectDefaultMetrics({ register });
  if (jobCounts !== undefined) {
    new Gauge({
      name: 'para_fine_tuning_jobs',
      help: 'Fine-tuning jobs by status (validating_files, queued, running, succeeded, failed, cancelled)',
      labelNames: ['status'] as const,
      registers: [register],
      collect() {
        for (const [status, n] of Object.entries(jobCounts())) this.set({ status }, n);
      },
    });
  }
  new Gauge({
    name: 'para_requests_running',
    help: 'Requests decoding now (KV rows in use)',
    registers: [register],
    collect() {
      this.set(engine.stats().running);
    },
  });
  new Gauge({
    name: 'para_requests_waiting',
    help: 'Requests waiting for a KV row',
    registers: [register],
    collect() {
      this.set(engine.stats().waiting);
    },
  });
  const requests = new Counter({
    name: 'para_requests_total',
    help: 'Requests ended, by endpoint and outcome',
    labelNames: ['endpoint', 'outcome'] as const,
    registers: [register],
  });
  const promptTokens = new Counter({
    name: 'para_prompt_tokens_total',
    help: 'Prompt tokens of ended requests',
    registers: [register],
  });
  const generated = new Counter({
    name: 'para_generated_tokens_total',
    help: 'Tokens generated',
    registers: [register],
  });
  const ttft = new Histogram({
    name: 'para_time_to_first_token_seconds',
    help: 'From submission to the first token',
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [register],
  });
  const itl = new Histogram({
    name: 'para_inter_token_latency_seconds',
    help: 'Between two tokens of a request',
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [register],
  });
  const duration = new Histogram({
    name: 'para_request_duration_seconds',
    help: 'From submission to the end of the request',
    labelNames: ['endpoint'] as const,
    buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120],
    registers: [register],
  });
  if (registry !== null) {
    const stat = (name: string, help: string, pick: () => number, counter: boolean) => {
      if (counter) {
        new Counter({
          name,
          help,
          registers: [register],
          collect() {
            this.reset();
            this.inc(pick());
          },
        });
      } else {
        new Gauge({
          name,
          help,
          registers: [register],
          collect() {
            this.set(pick());
          },
        });
      }
    };
    stat(
      'para_adapter_cache_hits_total',
      'Requests whose adapter was loaded already',
      () => registry.stats().hits,
      true,
    );
    stat('para_adapter_cache_loads_total', 'Adapters loaded', () => registry.stats().loads, true);
    stat(
      'para_adapter_cache_evictions_total',
      'Idle adapters evicted for the memory budget',
      () => registry.stats().evictions,
      true,
    );
    stat('para_adapters_loaded', 'Adapters in memory', () => registry.stats().loaded, false);
    stat(
      'para_adapter_bytes',
      'Bytes of adapter tensors in memory',
      () => registry.stats().bytes,
      false,
    );
  }
  return {
    register,
    begin(endpoint) {
      const t0 = now();
      let last = -1;
      let ended = false;
      return {
        token() {
          const t = now();
          if (last < 0) ttft.observe(t - t0);
          else itl.observe(t - last);
          last = t;
          generated.inc();
        },
        end(outcome, prompt, _completion) {
          if (ended) return;
          ended = true;
          requests.inc({ endpoint, outcome });
          promptTokens.inc(prompt);
          duration.observe({ endpoint }, now() - t0);
        },
      };
    },
  };
}
