// Writes golden.json: reference token ids for the strings below, computed by
// the Hugging Face tokenizers library (Rust, through its official node
// binding, npm package "tokenizers") on qwen3/tokenizer.json and on variants
// of it that exercise the Llama 3 / GPT-2 shaped pipeline pieces.
//
// Run from a scratch directory outside the repository that has the binding:
//   npm install tokenizers@0.23.2
//   node /path/to/internal/tokenizer/testdata/gen_golden.mjs /path/to/internal/tokenizer/testdata
import { createRequire } from 'node:module'
import fs from 'node:fs'
import path from 'node:path'
import os from 'node:os'
import zlib from 'node:zlib'

const require = createRequire(path.join(process.cwd(), 'x.js'))
const { Tokenizer } = require('tokenizers')
const bindingVersion = require('tokenizers/package.json').version

const dir = process.argv[2]
if (!dir) throw new Error('usage: node gen_golden.mjs TESTDATA_DIR')

const strings = [
  '',
  ' ',
  'Hello, world!',
  'The quick brown fox jumps over the lazy dog.',
  "I'm sure you'll see they've done it; she'd say it's John's. DON'T, WON'T, IT'S, We'Re",
  'func main() {\n\tfmt.Println("hi")\n\tfor i := 0; i < 10; i++ {\n\t\tx += i\n\t}\n}\n',
  'def f(x):\n    if x > 2:\n        return x * 2\n    return None\n\n\nclass A:\n    pass\n',
  '12345678',
  '3.14159 and 1,000,000 and 2024-01-15 and 0x1F and 1234567890123',
  '你好，世界！今天天气很好。',
  'こんにちは、世界。カタカナとひらがな',
  '안녕하세요 세계',
  '🤗🚀 👍🏽 👨‍👩‍👧‍👦 ❤️ 🇩🇪',
  'a  b   c    d\n\n\n  e \t\tf\r\n',
  '   leading and trailing   ',
  '\n\n\n',
  '\t',
  '<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n',
  'text<|endoftext|>more<|endoftext|><|endoftext|>',
  '<think>reasoning here</think>The answer is 42.',
  '  <|im_start|>  spaced  <|im_end|>  ',
  '<|im_start|<|im_end|><|im_end',
  'Caf\u00e9 na\u00efve r\u00e9sum\u00e9 vs Cafe\u0301 nai\u0308ve re\u0301sume\u0301',
  'caf\u00e9! and cafe\u0301! and caf\u00e9!x',
  'Ångström Å \ufb01 ligature ½ ²',
  'Привет мир! Ελληνικά. مرحبا بالعالم. नमस्ते दुनिया',
  'https://example.com/path/to?q=1&r=two#frag <a href="x">link</a>',
  'supercalifragilisticexpialidocious antidisestablishmentarianism pneumonoultramicroscopicsilicovolcanoconiosis',
  'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa',
  '!!!!!!!!!!!! ================ ------------ ............',
  '<<abc= ##abc= ~~abc= ^^cab= skill:rev=hello',
  'a\u00a0b\u2003c\u3000d\u200be',
  '∑_{i=1}^{n} x_i² ≤ ∞ and α+β=γ',
  '{"key": [1, 2, 3], "nested": {"a": null, "b": true}}',
  'Mixed123Numbers456and789',
  "It's   'quoted'   and \"double\"   'tis",
  ' Hello',
  '  Hello',
  'Hello ',
  'Hello  ',
  'HELLO WORLD hello world HeLLo WoRLD',
  '<tool_call>{"name": "f"}</tool_call>',
  '<|im_end|>\u0338 and >\u0338 and e\u0301<|endoftext|>\u0301',
  "it'\u017fa it'Sa K'K x'LL y'Ve",
]

// Variants of the Qwen3 file. Patches are applied by the Go test the same way
// (see applyVariant in golden_test.go): "set" replaces top-level fields or
// model.X fields, "merges_as_strings" rewrites merges as "a b" strings, and
// "vocab_add" appends tokens to model.vocab (moving the added tokens' ids up
// to stay after it, as the library requires), "added_tokens_update" changes the flags of added tokens found by content
// (or appends the token when no such content exists).
const llama3Regex = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
const variants = [
  { name: 'qwen3', description: 'the Qwen3 tokenizer.json as shipped', patch: {} },
  {
    name: 'llama3-style',
    description: 'Qwen3 vocab and merges in the shape of Llama 3.1: no normalizer, Llama 3 split regex, ignore_merges, merges as "a b" strings, Sequence[ByteLevel, TemplateProcessing] post-processor adding a BOS',
    patch: {
      set: {
        normalizer: null,
        pre_tokenizer: {
          type: 'Sequence',
          pretokenizers: [
            { type: 'Split', pattern: { Regex: llama3Regex }, behavior: 'Isolated', invert: false },
            { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false },
          ],
        },
        post_processor: {
          type: 'Sequence',
          processors: [
            { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
            {
              type: 'TemplateProcessing',
              single: [{ SpecialToken: { id: '<|endoftext|>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
              pair: [
                { SpecialToken: { id: '<|endoftext|>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } },
                { SpecialToken: { id: '<|endoftext|>', type_id: 1 } }, { Sequence: { id: 'B', type_id: 1 } },
              ],
              special_tokens: { '<|endoftext|>': { id: '<|endoftext|>', ids: [151646], tokens: ['<|endoftext|>'] } },
            },
          ],
        },
        decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
        'model.ignore_merges': true,
      },
      merges_as_strings: true,
      // Words no merge sequence reaches: ignore_merges must emit them whole.
      // They take ids 151643-151645, so the added tokens move up by 3.
      vocab_add: ['supercalifragilisticexpialidocious', 'Ġantidisestablishmentarianism', 'Ġpneumono'],
    },
  },
  {
    name: 'gpt2-style',
    description: 'Qwen3 vocab and merges in the shape of GPT-2: no normalizer, ByteLevel pre-tokenizer with the built-in regex and add_prefix_space, TemplateProcessing appending an EOS',
    patch: {
      set: {
        normalizer: null,
        pre_tokenizer: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
        post_processor: {
          type: 'TemplateProcessing',
          single: [{ Sequence: { id: 'A', type_id: 0 } }, { SpecialToken: { id: '<|im_end|>', type_id: 0 } }],
          pair: [{ Sequence: { id: 'A', type_id: 0 } }, { Sequence: { id: 'B', type_id: 1 } }],
          special_tokens: { '<|im_end|>': { id: '<|im_end|>', ids: [151645], tokens: ['<|im_end|>'] } },
        },
      },
    },
  },
  {
    name: 'added-flags',
    description: 'Qwen3 with NFC, a Digits pre-tokenizer before the split, added tokens with lstrip / rstrip / single_word / normalized, and a normalized added token written decomposed',
    patch: {
      set: {
        pre_tokenizer: {
          type: 'Sequence',
          pretokenizers: [
            { type: 'Digits', individual_digits: true },
            { type: 'Split', pattern: { Regex: "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+" }, behavior: 'Isolated', invert: false },
            { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false },
          ],
        },
      },
      added_tokens_update: [
        { content: '<|im_start|>', lstrip: true },
        { content: '<|im_end|>', rstrip: true },
        { content: '<think>', single_word: true },
        { content: '</think>', normalized: true },
        { id: 151669, content: 'cafe\u0301!', single_word: false, lstrip: false, rstrip: false, normalized: true, special: false },
      ],
    },
  },
]

function applyVariant(base, patch) {
  const j = structuredClone(base)
  for (const [k, v] of Object.entries(patch.set ?? {})) {
    if (k.startsWith('model.')) j.model[k.slice(6)] = v
    else j[k] = v
  }
  const added = patch.vocab_add ?? []
  const n = Object.keys(j.model.vocab).length
  added.forEach((tok, k) => { j.model.vocab[tok] = n + k })
  for (const a of j.added_tokens) if (a.id >= n) a.id += added.length
  if (patch.merges_as_strings) j.model.merges = j.model.merges.map((m) => (Array.isArray(m) ? m.join(' ') : m))
  for (const u of patch.added_tokens_update ?? []) {
    const t = j.added_tokens.find((a) => a.content === u.content)
    if (t) Object.assign(t, u)
    else j.added_tokens.push(u)
  }
  return j
}

const base = JSON.parse(zlib.gunzipSync(fs.readFileSync(path.join(dir, 'qwen3', 'tokenizer.json.gz'))).toString('utf8'))
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'golden-'))
const results = {}
for (const v of variants) {
  const file = path.join(tmp, v.name + '.json')
  fs.writeFileSync(file, JSON.stringify(applyVariant(base, v.patch)))
  const tok = Tokenizer.fromFile(file)
  results[v.name] = []
  for (const s of strings) {
    const plain = await tok.encode(s, null, { addSpecialTokens: false })
    const special = await tok.encode(s, null, { addSpecialTokens: true })
    results[v.name].push({
      ids: plain.getIds(),
      ids_special: special.getIds(),
      decoded: await tok.decode(plain.getIds(), false),
      decoded_skip_special: await tok.decode(special.getIds(), true),
    })
  }
}
const out = {
  reference: `npm package tokenizers@${bindingVersion} (Hugging Face tokenizers, Rust, official node binding): Tokenizer.fromFile, encode(s, null, {addSpecialTokens}), decode(ids, skipSpecialTokens)`,
  tokenizer: 'qwen3/tokenizer.json.gz',
  strings,
  variants,
  results,
}
fs.writeFileSync(path.join(dir, 'golden.json'), JSON.stringify(out, null, 1) + '\n')
fs.rmSync(tmp, { recursive: true })
console.log(`wrote ${strings.length} strings x ${variants.length} variants`)
