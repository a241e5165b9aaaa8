/**
 * Chat-template rendering with bounds, for templates from untrusted files.
 *
 * A tokenizer_config.json can carry any Jinja template, and `@huggingface/jinja` will run it to
 * the end: `{% for i in range(100000000) %}`, loops nested in loops, a macro that calls itself
 * forever, a string doubled in a loop. We bound three things and fail with a ParaError
 * LIMIT_EXCEEDED instead of hanging or running out of memory:
 *
 * - **size**: every string or list a template produces (the rendered text included) is at most
 *   `maxOutputChars` long;
 * - **work**: a step budget, `maxSteps`. Every node the interpreter evaluates costs one step,
 *   every list it produces costs its length and every string its length / 64 (so a loop that
 *   re-sorts a big list or keeps copying a growing string runs out of budget as well as one that
 *   simply iterates too often); `range(n)` costs n steps up front (so `range(10**8)` is refused
 *   before the list is built);
 * - **depth**: at most `maxDepth` nested evaluations (a macro recursing forever is stopped well
 *   before the JavaScript stack overflows; a stack overflow is reported the same way anyway).
 *
 * Optionally a wall-clock deadline (`timeoutMs`) is checked as the steps are counted.
 *
 * How it hooks in (the least invasive way we found in @huggingface/jinja 0.5.11): its
 * `Interpreter.evaluate(node, env)` is public and is what the interpreter itself calls for every
 * node (statements, expressions, loop and macro bodies — all through `this.evaluate`), so a
 * subclass overriding it sees everything and can count, measure and stop. Two things do work
 * without calling `evaluate`, and are handled here: a `for` loop's iterations (a loop with an
 * empty body would cost nothing per iteration) — each parsed `for` body gets an empty comment
 * node prepended, which renders as nothing but costs a step per iteration; and `range`, a global
 * function that builds its list in one call — it is replaced by a bounded one. Because
 * `Template.render` builds its own Interpreter, we render `template.parsed` ourselves, with an
 * Environment set up as `setupGlobals` does (it is not exported). The parser and lexer are
 * untouched, so a normal template renders exactly as before.
 */
import { Environment, Interpreter, Template } from '@huggingface/jinja';
import { ParaError } from '@para/core';

export interface ChatTemplateLimits {
  /** The longest string or list a template may produce, the rendered text included. Default 4 MiB of characters. */
  maxOutputChars?: number;
  /** The work budget (see chat-template.ts). Default 2,000,000 steps (a second or two of work at most). */
  maxSteps?: number;
  /** The deepest nesting of evaluations (macro recursion). Default 500. */
  maxDepth?: number;
  /** A wall-clock deadline for one rendering, in milliseconds. Default: none. */
  timeoutMs?: number;
}

export const DEFAULT_CHAT_TEMPLATE_LIMITS: Readonly<
  Required<Omit<ChatTemplateLimits, 'timeoutMs'>>
> = {
  maxOutputChars: 4 * 1024 * 1024,
  maxSteps: 2_000_000,
  maxDepth: 500,
};

/** Where a template came from, for error messages. */
export interface TemplateOrigin {
  file?: string;
  field: string;
}

type Node = { type: string; [key: string]: unknown };
type Value = { type: string; value: unknown };

/** Thrown inside the interpreter; turned into a ParaError by {@link renderChatTemplate}. */
class LimitHit extends Error {
  constructor(
    readonly what: string,
    readonly expected: string,
    readonly actual: string,
  ) {
    super(what);
  }
}

const STRING_COST_DIVISOR = 64;
/**
 * What one loop iteration costs: the interpreter builds a scope and a nine-entry `loop` object
 * for each, some ten times the work of evaluating a simple node.
 */
const LOOP_ITERATION_COST = 10;
/** Prepended to every `for` body: renders as nothing, costs LOOP_ITERATION_COST per iteration. */
const LOOP_MARKER: Node = Object.freeze({ type: 'Comment', value: '' });
const DEADLINE_CHECK_EVERY = 1024;

class BoundedInterpreter extends Interpreter {
  private steps = 0;
  private depth = 0;
  private readonly deadline: number | undefined;
  private readonly maxSteps: number;
  private readonly maxDepth: number;
  private readonly maxOutputChars: number;

  constructor(
    env: Environment,
    limits: Required<Omit<ChatTemplateLimits, 'timeoutMs'>>,
    timeoutMs: number | undefined,
  ) {
    super(env);
    this.maxSteps = limits.maxSteps;
    this.maxDepth = limits.maxDepth;
    this.maxOutputChars = limits.maxOutputChars;
    this.deadline = timeoutMs === undefined ? undefined : performance.now() + timeoutMs;
  }

  /** Adds `n` steps to the work done; throws when the budget is spent or the deadline passed. */
  charge(n: number): void {
    const before = this.steps;
    this.steps += n;
    if (this.steps > this.maxSteps) {
      throw new LimitHit(
        'chat template does too much work',
        `at most ${this.maxSteps} steps (limits.maxSteps)`,
        'more',
      );
    }
    if (
      this.deadline !== undefined &&
      Math.floor(before / DEADLINE_CHECK_EVERY) !== Math.floor(this.steps / DEADLINE_CHECK_EVERY) &&
      performance.now() > this.deadline
    ) {
      throw new LimitHit('chat template ran past its deadline', 'limits.timeoutMs', 'longer');
    }
  }

  override evaluate(
    statement: Parameters<Interpreter['evaluate']>[0],
    environment: Environment,
  ): ReturnType<Interpreter['evaluate']> {
    if (statement === (LOOP_MARKER as unknown)) this.charge(LOOP_ITERATION_COST);
    else if (++this.steps > this.maxSteps || this.deadline !== undefined) {
      this.steps--;
      this.charge(1);
    }
    if (++this.depth > this.maxDepth) {
      this.depth--;
      throw new LimitHit(
        'chat template nests too deeply (runaway recursion?)',
        `at most ${this.maxDepth} nested evaluations (limits.maxDepth)`,
        'deeper',
      );
    }
    let result: ReturnType<Interpreter['evaluate']>;
    try {
      result = super.evaluate(statement, environment);
    } finally {
      this.depth--;
    }
    const type = (result as unknown as Value).type;
    if (type === 'StringValue' || type === 'ArrayValue' || type === 'TupleValue') {
      const n = ((result as unknown as Value).value as { length: number }).length;
      if (n > this.maxOutputChars) {
        throw new LimitHit(
          type === 'StringValue'
            ? 'chat template produces too much text'
            : 'chat template builds too long a list',
          `at most ${this.maxOutputChars} ${type === 'StringValue' ? 'characters' : 'items'} (limits.maxOutputChars)`,
          String(n),
        );
      }
      const cost = type === 'StringValue' ? Math.floor(n / STRING_COST_DIVISOR) : n;
      if (cost > 0) this.charge(cost);
    }
    return result;
  }
}

/** Python's range, as @huggingface/jinja's, but charging its length before building it. */
function boundedRange(interp: () => BoundedInterpreter) {
  return (start: number, stop?: number, step = 1): number[] => {
    let lo = start;
    let hi = stop;
    if (hi === undefined) {
      hi = lo;
      lo = 0;
    }
    if (![lo, hi, step].every((x) => typeof x === 'number' && !Number.isNaN(x)))
      throw new Error('range() arguments must be numbers');
    if (step === 0) throw new Error('range() step must not be zero');
    const n = step > 0 ? Math.ceil((hi - lo) / step) : Math.ceil((lo - hi) / -step);
    const length = Number.isFinite(n) ? Math.max(0, n) : Number.POSITIVE_INFINITY;
    interp().charge(length);
    const out: number[] = [];
    for (let i = 0, x = lo; i < length; i++, x += step) out.push(x);
    return out;
  };
}

/** `strftime_now` as @huggingface/jinja 0.5.11 implements it (%Y %m %d %b %B %H %M %%). */
function strftimeNow(format: string): string {
  const date = new Date();
  const pad2 = (n: number) => (n < 10 ? `0${n}` : String(n));
  return String(format).replace(/%[YmdbBHM%]/g, (token) => {
    switch (token) {
      case '%Y':
        return String(date.getFullYear());
      case '%m':
        return pad2(date.getMonth() + 1);
      case '%d':
        return pad2(date.getDate());
      case '%b':
        return new Intl.DateTimeFormat(undefined, { month: 'short' }).format(date);
      case '%B':
        return new Intl.DateTimeFormat(undefined, { month: 'long' }).format(date);
      case '%H':
        return pad2(date.getHours());
      case '%M':
        return pad2(date.getMinutes());
      default:
        return '%';
    }
  });
}

/**
 * Parses a template and prepares it for bounded rendering: every `for` body gets an empty
 * comment first, so each iteration costs a step. The walk over the parsed tree is iterative.
 */
export function compileChatTemplate(source: string): Template {
  const template = new Template(source);
  const stack: unknown[] = [template.parsed];
  const seen = new Set<unknown>();
  while (stack.length > 0) {
    const node = stack.pop();
    if (typeof node !== 'object' || node === null || seen.has(node)) continue;
    seen.add(node);
    if (Array.isArray(node)) {
      for (const x of node) stack.push(x);
      continue;
    }
    const n = node as Node;
    for (const key of Object.keys(n)) stack.push(n[key]);
    if (n.type === 'For' && Array.isArray(n.body)) n.body.unshift(LOOP_MARKER);
  }
  return template;
}

function checkLimit(v: unknown, name: string, allowZero = false): void {
  if (v !== undefined && !(typeof v === 'number' && v >= (allowZero ? 0 : 1) && !Number.isNaN(v))) {
    throw new ParaError('INVALID_ARGUMENT', `bad chat template limit ${name}`, {
      field: `limits.${name}`,
      expected: allowZero ? 'a number ≥ 0' : 'a number ≥ 1',
      actual: String(v),
    });
  }
}

/**
 * Renders a compiled template with `variables`, within `limits`. A limit reached is a ParaError
 * LIMIT_EXCEEDED naming the template's origin (file and field); any other failure inside the
 * template (including `raise_exception`) is rethrown as it is, for the caller to wrap.
 */
export function renderChatTemplate(
  template: Template,
  variables: Record<string, unknown>,
  limits: ChatTemplateLimits | undefined,
  origin: TemplateOrigin,
): string {
  const l = limits ?? {};
  for (const k of ['maxOutputChars', 'maxSteps', 'maxDepth'] as const) checkLimit(l[k], k);
  checkLimit(l.timeoutMs, 'timeoutMs', true);
  const bounds = {
    maxOutputChars: l.maxOutputChars ?? DEFAULT_CHAT_TEMPLATE_LIMITS.maxOutputChars,
    maxSteps: l.maxSteps ?? DEFAULT_CHAT_TEMPLATE_LIMITS.maxSteps,
    maxDepth: l.maxDepth ?? DEFAULT_CHAT_TEMPLATE_LIMITS.maxDepth,
  };
  const env = new Environment();
  // As setupGlobals in @huggingface/jinja 0.5.11, with range bounded.
  let interpreter: BoundedInterpreter | undefined;
  env.set('false', false);
  env.set('true', true);
  env.set('none', null);
  env.set('raise_exception', (message: string) => {
    throw new Error(message);
  });
  env.set(
    'range',
    boundedRange(() => interpreter!),
  );
  env.set('strftime_now', strftimeNow);
  env.set('True', true);
  env.set('False', false);
  env.set('None', null);
  for (const [key, value] of Object.entries(variables)) env.set(key, value);
  interpreter = new BoundedInterpreter(env, bounds, l.timeoutMs);
  const limitError = (what: string, expected: string, actual: string, cause: unknown) =>
    new ParaError('LIMIT_EXCEEDED', what, {
      ...(origin.file !== undefined ? { file: origin.file } : {}),
      field: origin.field,
      expected,
      actual,
      cause,
    });
  try {
    return (interpreter.run(template.parsed) as unknown as { value: string }).value;
  } catch (e) {
    if (e instanceof LimitHit) throw limitError(e.what, e.expected, e.actual, e);
    if (e instanceof RangeError && /call stack|string length|array length/i.test(e.message)) {
      // Backstops: the JavaScript stack or V8's largest string or array was reached first.
      throw limitError(
        `chat template exhausted a runtime limit: ${e.message}`,
        'a template within the limits',
        e.message,
        e,
      );
    }
    throw e;
  }
}
