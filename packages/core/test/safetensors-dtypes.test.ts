import { describe, expect, it } from 'vitest';
import { isParaError } from '../src/errors';
import {
  bf16BitsToFloat32,
  decodeFloat,
  decodeInt,
  encodeFloat32,
  encodeInto,
  f16BitsToFloat32,
  float32Bits,
  float32FromBits,
  float32ToBF16Bits,
  float32ToF16Bits,
} from '../src/safetensors';

const hex = (n: number): string => `0x${n.toString(16).padStart(4, '0')}`;

/** Naive half decoding straight from the IEEE 754 definition (the reference). */
function halfValue(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m === 0 ? s * Number.POSITIVE_INFINITY : Number.NaN;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

describe('F16', () => {
  it('encodes hand-computed values', () => {
    const cases: [number, number][] = [
      [1.0, 0x3c00],
      [-2.0, 0xc000],
      [65504, 0x7bff], // largest finite half
      [65519, 0x7bff], // below the midpoint to 65536
      [65520, 0x7c00], // the midpoint: ties to even = inf
      [1e6, 0x7c00], // overflow → inf
      [-1e6, 0xfc00],
      [2 ** -24, 0x0001], // smallest subnormal
      [2 ** -25, 0x0000], // half of it: ties to even = 0
      [1.5 * 2 ** -25, 0x0001],
      [2 ** -14, 0x0400], // smallest normal
      [2 ** -14 - 2 ** -24, 0x03ff], // largest subnormal
      [1 + 2 ** -11, 0x3c00], // tie between 0x3c00 and 0x3c01 → even
      [1 + 3 * 2 ** -11, 0x3c02], // tie between 0x3c01 and 0x3c02 → even
      [0.1, 0x2e66],
      [-0, 0x8000],
      [Number.POSITIVE_INFINITY, 0x7c00],
      [Number.NEGATIVE_INFINITY, 0xfc00],
    ];
    for (const [x, bits] of cases) expect(hex(float32ToF16Bits(x)), `f16(${x})`).toBe(hex(bits));
  });

  it('keeps NaN a NaN', () => {
    for (const bits of [0x7fc00000, 0x7f800001, 0xffc00000, 0x7fbfffff]) {
      const h = float32ToF16Bits(float32FromBits(bits));
      expect(h & 0x7c00).toBe(0x7c00);
      expect(h & 0x3ff).not.toBe(0);
      expect(h & 0x8000).toBe((bits >>> 16) & 0x8000);
    }
  });

  it('decodes every one of the 65,536 bit patterns like the IEEE definition', () => {
    const wrong: string[] = [];
    for (let h = 0; h < 65536; h++) {
      const got = f16BitsToFloat32(h);
      const want = halfValue(h);
      const same = Number.isNaN(want) ? Number.isNaN(got) : Object.is(got, want);
      if (!same) wrong.push(`${hex(h)}: ${got} vs ${want}`);
    }
    expect(wrong.slice(0, 5)).toEqual([]);
  });

  it('encode(decode(h)) = h for every non-NaN half', () => {
    for (let h = 0; h < 65536; h++) {
      if ((h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0) continue;
      const back = float32ToF16Bits(f16BitsToFloat32(h));
      if (back !== h) expect(hex(back), hex(h)).toBe(hex(h));
    }
  });

  it('rounds to nearest-even at every boundary between adjacent positive halves', () => {
    // For halves h < h+1, the float32 midpoint m is exact (12 significant bits). Below m → h,
    // above m → h+1, at m → the even one. h+1 = 0x7c00 is taken as 65536 (overflow to inf).
    for (let h = 0; h < 0x7c00; h++) {
      const lo = halfValue(h);
      const hi = h + 1 === 0x7c00 ? 65536 : halfValue(h + 1);
      const mid = (lo + hi) / 2;
      const midBits = float32Bits(mid);
      expect(float32FromBits(midBits)).toBe(mid);
      const even = (h & 1) === 0 ? h : h + 1;
      const atMid = float32ToF16Bits(mid);
      const below = float32ToF16Bits(float32FromBits(midBits - 1));
      const above = float32ToF16Bits(float32FromBits(midBits + 1));
      if (atMid !== even || below !== h || above !== h + 1) {
        expect([hex(below), hex(atMid), hex(above)], hex(h)).toEqual([
          hex(h),
          hex(even),
          hex(h + 1),
        ]);
      }
    }
  });
});

describe('BF16', () => {
  it('encodes hand-computed values with ties to even', () => {
    const cases: [number, number][] = [
      [1.0, 0x3f80],
      [-2.0, 0xc000],
      [1 + 2 ** -8, 0x3f80], // tie between 0x3f80 and 0x3f81 → even
      [1 + 3 * 2 ** -8, 0x3f82], // tie between 0x3f81 and 0x3f82 → even
      [1 + 2 ** -8 + 2 ** -20, 0x3f81], // just above the tie
      [float32FromBits(0x7f7fffff), 0x7f80], // max float32 rounds to inf
      [Number.POSITIVE_INFINITY, 0x7f80],
      [-0, 0x8000],
      [float32FromBits(0x00000001), 0x0000], // tiny subnormal → 0
    ];
    for (const [x, bits] of cases) expect(hex(float32ToBF16Bits(x)), `bf16(${x})`).toBe(hex(bits));
  });

  it('keeps NaN a NaN (including signalling NaNs whose payload is in the low bits)', () => {
    expect(hex(float32ToBF16Bits(Number.NaN))).toBe('0x7fc0');
    for (const bits of [0x7f800001, 0xff800001, 0x7fc00000, 0x7fffffff]) {
      const b = float32ToBF16Bits(float32FromBits(bits));
      expect(Number.isNaN(bf16BitsToFloat32(b)), hex(bits >>> 16)).toBe(true);
      expect(b & 0x8000).toBe((bits >>> 16) & 0x8000);
    }
  });

  it('decodes as the upper half of a float32 and rounds correctly around every value', () => {
    for (let h = 0; h < 0x7f80; h++) {
      expect(float32Bits(bf16BitsToFloat32(h))).toBe(h << 16);
      const mid = (h << 16) | 0x8000; // exactly between h and h+1
      const even = (h & 1) === 0 ? h : h + 1;
      const got = [mid - 1, mid, mid + 1].map((b) => float32ToBF16Bits(float32FromBits(b)));
      if (got[0] !== h || got[1] !== even || got[2] !== h + 1) {
        expect(got.map(hex), hex(h)).toEqual([hex(h), hex(even), hex(h + 1)]);
      }
    }
  });
});

describe('decoding raw bytes', () => {
  it('decodes at unaligned offsets (copying) with the same result', () => {
    const values = new Float32Array([1.5, -2, 3.25, Number.NEGATIVE_INFINITY]);
    const raw = encodeFloat32(values, 'F32');
    const buf = new Uint8Array(raw.byteLength + 1);
    buf.set(raw, 1); // offset 1: not a multiple of 4
    const got = decodeFloat(buf.subarray(1), 'F32');
    expect(Array.from(got)).toEqual(Array.from(values));

    const f16 = encodeFloat32(values, 'F16');
    const buf16 = new Uint8Array(f16.byteLength + 3);
    buf16.set(f16, 3);
    expect(Array.from(decodeFloat(buf16.subarray(3), 'F16'))).toEqual(Array.from(values));
    expect(Array.from(decodeFloat(buf16.subarray(3), 'BF16'))).not.toEqual(Array.from(values));
  });

  it('reads I64 within int32 and rejects values outside it, naming the tensor', () => {
    const ok = new Uint8Array(24);
    encodeInto(ok, new BigInt64Array([-(2n ** 31n), 2n ** 31n - 1n, -1n]), 'I64');
    const odd = new Uint8Array(25);
    odd.set(ok, 1); // unaligned
    expect(Array.from(decodeInt(odd.subarray(1), 'I64'))).toEqual([-(2 ** 31), 2 ** 31 - 1, -1]);

    for (const v of [2n ** 31n, -(2n ** 31n) - 1n, 2n ** 40n]) {
      const bad = new Uint8Array(16);
      encodeInto(bad, new BigInt64Array([0n, v]), 'I64');
      let err: unknown;
      try {
        decodeInt(bad, 'I64', { name: 'ids', file: 'x.safetensors' });
      } catch (e) {
        err = e;
      }
      expect(isParaError(err, 'UNSUPPORTED')).toBe(true);
      expect((err as Error).message).toContain('ids');
      expect((err as Error).message).toContain('x.safetensors');
      expect((err as Error).message).toContain(v.toString());
    }
  });

  it('decodes U8, I8, I16, U16 and BOOL to int32', () => {
    const bytes = new Uint8Array([0, 1, 127, 128, 255, 254]);
    expect(Array.from(decodeInt(bytes, 'U8'))).toEqual([0, 1, 127, 128, 255, 254]);
    expect(Array.from(decodeInt(bytes, 'I8'))).toEqual([0, 1, 127, -128, -1, -2]);
    expect(Array.from(decodeInt(bytes, 'I16'))).toEqual([256, -32641, -257]);
    expect(Array.from(decodeInt(bytes, 'U16'))).toEqual([256, 32895, 65279]);
    expect(Array.from(decodeInt(bytes, 'BOOL'))).toEqual([0, 1, 1, 1, 1, 1]);
  });

  it('decodes F64 to float32 (rounded)', () => {
    const out = new Uint8Array(24);
    encodeInto(out, new Float64Array([0.1, 1e300, -3]), 'F64');
    expect(Array.from(decodeFloat(out, 'F64'))).toEqual([
      Math.fround(0.1),
      Number.POSITIVE_INFINITY,
      -3,
    ]);
  });

  it('rejects a byte count that is not a whole number of elements', () => {
    expect(() => decodeFloat(new Uint8Array(6), 'F32', { name: 'w' })).toThrow(/w.*6 bytes/);
  });

  it('range-checks integer values when encoding', () => {
    expect(() => encodeInto(new Uint8Array(1), [256], 'U8', { name: 'm' })).toThrow(/"m"/);
    expect(() => encodeInto(new Uint8Array(4), [1.5], 'I32')).toThrow(/I32/);
    expect(() => encodeInto(new Uint8Array(1), [2], 'BOOL')).toThrow(/BOOL/);
  });
});
