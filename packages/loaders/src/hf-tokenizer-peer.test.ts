// int21's HfTokenizer against the Hugging Face tokenizers library on every family fixture.
import { readFileSync } from "node:fs";
import type { GgufTokenizer } from "@int21/io";
import { sharedPath } from "@int21/shared-data";
import { describe, expect, it } from "vitest";
import { GGUF_PRE_TOKENIZERS, HfTokenizer } from "./hf-tokenizer";

// The expected values below were produced by the real Hugging Face peers, not by int21: tokenizers 0.23.2
// and transformers 5.18.0, run once in a throwaway Python venv on the fixture folders of
// ../shared/fixtures/hf-families (never needed by CI).
// For each test string: `raw` = `Tokenizer.from_file(dir/tokenizer.json).encode(text, add_special_tokens=False).ids`,
// `special` = the same with add_special_tokens=True, `decoded` = `.decode(raw, skip_special_tokens=True)`.
// transformers' `AutoTokenizer.from_pretrained(dir)(text)` gives `special` for every case except three llama2 ones
// ("  leading…", " " and the <s>…<unk> string) where transformers 5 rebuilds the Llama tokenizer in its legacy
// mode; int21 follows the tokenizers library there.
const PEER: Record<
  string,
  { vocab: number; cases: { text: string; raw: number[]; special: number[]; decoded: string }[] }
> = {
  llama2: {
    vocab: 32000,
    cases: [
      {
        text: "Once upon a time, there was a little girl named Lily.",
        raw: [9038, 2501, 263, 931, 29892, 727, 471, 263, 2217, 7826, 4257, 365, 2354, 29889],
        special: [1, 9038, 2501, 263, 931, 29892, 727, 471, 263, 2217, 7826, 4257, 365, 2354, 29889],
        decoded: "Once upon a time, there was a little girl named Lily.",
      },
      {
        text: "  leading spaces and   multiple   spaces  ",
        raw: [259, 8236, 8162, 322, 259, 2999, 259, 8162, 259],
        special: [1, 259, 8236, 8162, 322, 259, 2999, 259, 8162, 259],
        decoded: "  leading spaces and   multiple   spaces  ",
      },
      {
        text: "Numbers: 12345 and 3.14159, 2024-01-01",
        raw: [
          11848, 2596, 29901, 29871, 29896, 29906, 29941, 29946, 29945, 322, 29871, 29941, 29889, 29896,
          29946, 29896, 29945, 29929, 29892, 29871, 29906, 29900, 29906, 29946, 29899, 29900, 29896, 29899,
          29900, 29896,
        ],
        special: [
          1, 11848, 2596, 29901, 29871, 29896, 29906, 29941, 29946, 29945, 322, 29871, 29941, 29889, 29896,
          29946, 29896, 29945, 29929, 29892, 29871, 29906, 29900, 29906, 29946, 29899, 29900, 29896, 29899,
          29900, 29896,
        ],
        decoded: "Numbers: 12345 and 3.14159, 2024-01-01",
      },
      {
        text: "Line one\nLine two\n\n\tTabbed\r\nCRLF",
        raw: [7407, 697, 13, 3542, 1023, 13, 13, 12, 8863, 2580, 30004, 13, 29907, 2241, 29943],
        special: [1, 7407, 697, 13, 3542, 1023, 13, 13, 12, 8863, 2580, 30004, 13, 29907, 2241, 29943],
        decoded: "Line one\nLine two\n\n\tTabbed\r\nCRLF",
      },
      {
        text: "Unicode: café naïve 日本語 Ω≈ç√ 🙂👍🏽",
        raw: [
          23862, 29901, 274, 28059, 1055, 30085, 345, 29871, 30325, 30346, 30968, 29871, 30357, 30583, 30019,
          30562, 29871, 243, 162, 156, 133, 243, 162, 148, 144, 243, 162, 146, 192,
        ],
        special: [
          1, 23862, 29901, 274, 28059, 1055, 30085, 345, 29871, 30325, 30346, 30968, 29871, 30357, 30583,
          30019, 30562, 29871, 243, 162, 156, 133, 243, 162, 148, 144, 243, 162, 146, 192,
        ],
        decoded: "Unicode: café naïve 日本語 Ω≈ç√ 🙂👍🏽",
      },
      {
        text: "don't I'll we're THEY'RE",
        raw: [1016, 29915, 29873, 306, 29915, 645, 591, 29915, 276, 6093, 29979, 29915, 1525],
        special: [1, 1016, 29915, 29873, 306, 29915, 645, 591, 29915, 276, 6093, 29979, 29915, 1525],
        decoded: "don't I'll we're THEY'RE",
      },
      { text: " ", raw: [259], special: [1, 259], decoded: " " },
      { text: "", raw: [], special: [1], decoded: "" },
      {
        text: "<s>Hello</s> world<unk>",
        raw: [1, 15043, 2, 259, 11526, 0],
        special: [1, 1, 15043, 2, 259, 11526, 0],
        decoded: "Hello  world",
      },
    ],
  },
  llama3: {
    vocab: 2048,
    cases: [
      {
        text: "Once upon a time, there was a little girl named Lily.",
        raw: [393, 416, 258, 374, 11, 376, 277, 258, 368, 425, 443, 356, 13],
        special: [2000, 393, 416, 258, 374, 11, 376, 277, 258, 368, 425, 443, 356, 13],
        decoded: "Once upon a time, there was a little girl named Lily.",
      },
      {
        text: "  leading spaces and   multiple   spaces  ",
        raw: [220, 506, 363, 287, 459, 775, 82, 266, 542, 558, 75, 83, 1006, 305, 542, 459, 775, 82, 542],
        special: [
          2000, 220, 506, 363, 287, 459, 775, 82, 266, 542, 558, 75, 83, 1006, 305, 542, 459, 775, 82, 542,
        ],
        decoded: "  leading spaces and   multiple   spaces  ",
      },
      {
        text: "Numbers: 12345 and 3.14159, 2024-01-01",
        raw: [
          45, 462, 658, 82, 25, 220, 1367, 1307, 266, 220, 18, 13, 1368, 1308, 11, 220, 17, 15, 17, 19, 12,
          15, 16, 12, 15, 16,
        ],
        special: [
          2000, 45, 462, 658, 82, 25, 220, 1367, 1307, 266, 220, 18, 13, 1368, 1308, 11, 220, 17, 15, 17, 19,
          12, 15, 16, 12, 15, 16,
        ],
        decoded: "Numbers: 12345 and 3.14159, 2024-01-01",
      },
      {
        text: "Line one\nLine two\n\n\tTabbed\r\nCRLF",
        raw: [43, 787, 633, 198, 43, 787, 866, 288, 197, 51, 64, 1166, 201, 198, 34, 49, 43, 37],
        special: [2000, 43, 787, 633, 198, 43, 787, 866, 288, 197, 51, 64, 1166, 201, 198, 34, 49, 43, 37],
        decoded: "Line one\nLine two\n\n\tTabbed\r\nCRLF",
      },
      {
        text: "Unicode: café naïve 日本語 Ω≈ç√ 🙂👍🏽",
        raw: [
          52, 77, 463, 78, 956, 25, 491, 69, 730, 1360, 220, 162, 1350, 250, 105, 164, 103, 252, 220, 138,
          102, 158, 231, 230, 127, 100, 158, 230, 248, 1343, 247, 224, 897, 239, 235, 897, 237, 121,
        ],
        special: [
          2000, 52, 77, 463, 78, 956, 25, 491, 69, 730, 1360, 220, 162, 1350, 250, 105, 164, 103, 252, 220,
          138, 102, 158, 231, 230, 127, 100, 158, 230, 248, 1343, 247, 224, 897, 239, 235, 897, 237, 121,
        ],
        decoded: "Unicode: café naïve 日本語 Ω≈ç√ 🙂👍🏽",
      },
      {
        text: "don't I'll we're THEY'RE",
        raw: [67, 282, 408, 362, 1567, 383, 1271, 285, 39, 36, 56, 6, 49, 36],
        special: [2000, 67, 282, 408, 362, 1567, 383, 1271, 285, 39, 36, 56, 6, 49, 36],
        decoded: "don't I'll we're THEY'RE",
      },
      { text: " ", raw: [220], special: [2000, 220], decoded: " " },
      { text: "", raw: [], special: [2000], decoded: "" },
      {
        text: "<|begin_of_text|>Hi<|eot_id|>\n<|start_header_id|>user<|end_header_id|>",
        raw: [2000, 1888, 2009, 198, 2006, 1015, 276, 2007],
        special: [2000, 2000, 1888, 2009, 198, 2006, 1015, 276, 2007],
        decoded: "Hi\nuser",
      },
    ],
  },
  smollm2: {
    vocab: 2048,
    cases: [
      {
        text: "Once upon a time, there was a little girl named Lily.",
        raw: [408, 431, 275, 389, 28, 391, 294, 275, 383, 440, 458, 371, 30],
        special: [408, 431, 275, 389, 28, 391, 294, 275, 383, 440, 458, 371, 30],
        decoded: "Once upon a time, there was a little girl named Lily.",
      },
      {
        text: "  leading spaces and   multiple   spaces  ",
        raw: [237, 521, 378, 304, 474, 789, 99, 283, 557, 573, 92, 100, 1017, 321, 557, 474, 789, 99, 557],
        special: [
          237, 521, 378, 304, 474, 789, 99, 283, 557, 573, 92, 100, 1017, 321, 557, 474, 789, 99, 557,
        ],
        decoded: "  leading spaces and   multiple   spaces  ",
      },
      {
        text: "Numbers: 12345 and 3.14159, 2024-01-01",
        raw: [
          62, 477, 672, 99, 42, 1375, 1320, 283, 1085, 30, 1401, 28, 1253, 32, 34, 36, 29, 32, 33, 29, 32, 33,
        ],
        special: [
          62, 477, 672, 99, 42, 1375, 1320, 283, 1085, 30, 1401, 28, 1253, 32, 34, 36, 29, 32, 33, 29, 32, 33,
        ],
        decoded: "Numbers: 12345 and 3.14159, 2024-01-01",
      },
      {
        text: "Line one\nLine two\n\n\tTabbed\r\nCRLF",
        raw: [60, 801, 647, 215, 60, 801, 879, 215, 215, 214, 68, 81, 1177, 218, 215, 51, 66, 60, 54],
        special: [60, 801, 647, 215, 60, 801, 879, 215, 215, 214, 68, 81, 1177, 218, 215, 51, 66, 60, 54],
        decoded: "Line one\nLine two\n\n\tTabbed\r\nCRLF",
      },
      {
        text: "Unicode: café naïve 日本語 Ω≈ç√ 🙂👍🏽",
        raw: [
          69, 94, 478, 95, 969, 42, 506, 86, 744, 1371, 237, 179, 1361, 267, 122, 181, 120, 269, 237, 155,
          119, 175, 248, 247, 144, 117, 175, 247, 265, 1355, 264, 241, 910, 256, 252, 910, 254, 138,
        ],
        special: [
          69, 94, 478, 95, 969, 42, 506, 86, 744, 1371, 237, 179, 1361, 267, 122, 181, 120, 269, 237, 155,
          119, 175, 248, 247, 144, 117, 175, 247, 265, 1355, 264, 241, 910, 256, 252, 910, 254, 138,
        ],
        decoded: "Unicode: café naïve 日本語 Ω≈ç√ 🙂👍🏽",
      },
      {
        text: "don't I'll we're THEY'RE",
        raw: [84, 299, 423, 377, 1582, 398, 1284, 302, 56, 53, 73, 23, 66, 53],
        special: [84, 299, 423, 377, 1582, 398, 1284, 302, 56, 53, 73, 23, 66, 53],
        decoded: "don't I'll we're THEY'RE",
      },
      { text: " ", raw: [237], special: [237], decoded: " " },
      { text: "", raw: [], special: [], decoded: "" },
      {
        text: "<|im_start|>user\nHi there<|im_end|>\n<|endoftext|>",
        raw: [1, 1026, 293, 215, 1898, 391, 2, 215, 0],
        special: [1, 1026, 293, 215, 1898, 391, 2, 215, 0],
        decoded: "user\nHi there\n",
      },
    ],
  },
  qwen2: {
    vocab: 2003,
    cases: [
      {
        text: "Once upon a time, there was a little girl named Lily.",
        raw: [393, 416, 258, 374, 11, 376, 277, 258, 368, 425, 443, 356, 13],
        special: [393, 416, 258, 374, 11, 376, 277, 258, 368, 425, 443, 356, 13],
        decoded: "Once upon a time, there was a little girl named Lily.",
      },
      {
        text: "  leading spaces and   multiple   spaces  ",
        raw: [220, 506, 363, 287, 459, 775, 82, 266, 542, 558, 75, 83, 1006, 305, 542, 459, 775, 82, 542],
        special: [220, 506, 363, 287, 459, 775, 82, 266, 542, 558, 75, 83, 1006, 305, 542, 459, 775, 82, 542],
        decoded: "  leading spaces and   multiple   spaces  ",
      },
      {
        text: "Numbers: 12345 and 3.14159, 2024-01-01",
        raw: [
          45, 462, 658, 82, 25, 220, 16, 17, 18, 19, 20, 266, 220, 18, 13, 16, 19, 16, 20, 24, 11, 220, 17,
          15, 17, 19, 12, 15, 16, 12, 15, 16,
        ],
        special: [
          45, 462, 658, 82, 25, 220, 16, 17, 18, 19, 20, 266, 220, 18, 13, 16, 19, 16, 20, 24, 11, 220, 17,
          15, 17, 19, 12, 15, 16, 12, 15, 16,
        ],
        decoded: "Numbers: 12345 and 3.14159, 2024-01-01",
      },
      {
        text: "Line one\nLine two\n\n\tTabbed\r\nCRLF",
        raw: [43, 787, 633, 198, 43, 787, 866, 288, 197, 51, 64, 1166, 201, 198, 34, 49, 43, 37],
        special: [43, 787, 633, 198, 43, 787, 866, 288, 197, 51, 64, 1166, 201, 198, 34, 49, 43, 37],
        decoded: "Line one\nLine two\n\n\tTabbed\r\nCRLF",
      },
      {
        text: "Unicode: café naïve 日本語 Ω≈ç√ 🙂👍🏽",
        raw: [
          52, 77, 463, 78, 956, 25, 491, 69, 730, 1355, 220, 162, 1345, 250, 105, 164, 103, 252, 220, 138,
          102, 158, 231, 230, 127, 100, 158, 230, 248, 1338, 247, 224, 897, 239, 235, 897, 237, 121,
        ],
        special: [
          52, 77, 463, 78, 956, 25, 491, 69, 730, 1355, 220, 162, 1345, 250, 105, 164, 103, 252, 220, 138,
          102, 158, 231, 230, 127, 100, 158, 230, 248, 1338, 247, 224, 897, 239, 235, 897, 237, 121,
        ],
        decoded: "Unicode: café naïve 日本語 Ω≈ç√ 🙂👍🏽",
      },
      {
        text: "don't I'll we're THEY'RE",
        raw: [67, 282, 408, 362, 1558, 383, 1271, 285, 39, 36, 56, 6, 49, 36],
        special: [67, 282, 408, 362, 1558, 383, 1271, 285, 39, 36, 56, 6, 49, 36],
        decoded: "don't I'll we're THEY'RE",
      },
      { text: " ", raw: [220], special: [220], decoded: " " },
      { text: "", raw: [], special: [], decoded: "" },
      {
        text: "<|im_start|>user\nHi there<|im_end|>\n<|endoftext|>",
        raw: [2001, 1015, 276, 198, 1879, 376, 2002, 198, 2000],
        special: [2001, 1015, 276, 198, 1879, 376, 2002, 198, 2000],
        decoded: "user\nHi there\n",
      },
    ],
  },
  qwen3: {
    vocab: 2003,
    cases: [
      {
        text: "Once upon a time, there was a little girl named Lily.",
        raw: [393, 416, 258, 374, 11, 376, 277, 258, 368, 425, 443, 356, 13],
        special: [393, 416, 258, 374, 11, 376, 277, 258, 368, 425, 443, 356, 13],
        decoded: "Once upon a time, there was a little girl named Lily.",
      },
      {
        text: "  leading spaces and   multiple   spaces  ",
        raw: [220, 506, 363, 287, 459, 775, 82, 266, 542, 558, 75, 83, 1006, 305, 542, 459, 775, 82, 542],
        special: [220, 506, 363, 287, 459, 775, 82, 266, 542, 558, 75, 83, 1006, 305, 542, 459, 775, 82, 542],
        decoded: "  leading spaces and   multiple   spaces  ",
      },
      {
        text: "Numbers: 12345 and 3.14159, 2024-01-01",
        raw: [
          45, 462, 658, 82, 25, 220, 16, 17, 18, 19, 20, 266, 220, 18, 13, 16, 19, 16, 20, 24, 11, 220, 17,
          15, 17, 19, 12, 15, 16, 12, 15, 16,
        ],
        special: [
          45, 462, 658, 82, 25, 220, 16, 17, 18, 19, 20, 266, 220, 18, 13, 16, 19, 16, 20, 24, 11, 220, 17,
          15, 17, 19, 12, 15, 16, 12, 15, 16,
        ],
        decoded: "Numbers: 12345 and 3.14159, 2024-01-01",
      },
      {
        text: "Line one\nLine two\n\n\tTabbed\r\nCRLF",
        raw: [43, 787, 633, 198, 43, 787, 866, 288, 197, 51, 64, 1166, 201, 198, 34, 49, 43, 37],
        special: [43, 787, 633, 198, 43, 787, 866, 288, 197, 51, 64, 1166, 201, 198, 34, 49, 43, 37],
        decoded: "Line one\nLine two\n\n\tTabbed\r\nCRLF",
      },
      {
        text: "Unicode: café naïve 日本語 Ω≈ç√ 🙂👍🏽",
        raw: [
          52, 77, 463, 78, 956, 25, 491, 69, 730, 1355, 220, 162, 1345, 250, 105, 164, 103, 252, 220, 138,
          102, 158, 231, 230, 127, 100, 158, 230, 248, 1338, 247, 224, 897, 239, 235, 897, 237, 121,
        ],
        special: [
          52, 77, 463, 78, 956, 25, 491, 69, 730, 1355, 220, 162, 1345, 250, 105, 164, 103, 252, 220, 138,
          102, 158, 231, 230, 127, 100, 158, 230, 248, 1338, 247, 224, 897, 239, 235, 897, 237, 121,
        ],
        decoded: "Unicode: café naïve 日本語 Ω≈ç√ 🙂👍🏽",
      },
      {
        text: "don't I'll we're THEY'RE",
        raw: [67, 282, 408, 362, 1558, 383, 1271, 285, 39, 36, 56, 6, 49, 36],
        special: [67, 282, 408, 362, 1558, 383, 1271, 285, 39, 36, 56, 6, 49, 36],
        decoded: "don't I'll we're THEY'RE",
      },
      { text: " ", raw: [220], special: [220], decoded: " " },
      { text: "", raw: [], special: [], decoded: "" },
      {
        text: "<|im_start|>user\nHi there<|im_end|>\n<|endoftext|>",
        raw: [2001, 1015, 276, 198, 1879, 376, 2002, 198, 2000],
        special: [2001, 1015, 276, 198, 1879, 376, 2002, 198, 2000],
        decoded: "user\nHi there\n",
      },
    ],
  },
  mistral: {
    vocab: 32000,
    cases: [
      {
        text: "Once upon a time, there was a little girl named Lily.",
        raw: [9038, 2501, 263, 931, 29892, 727, 471, 263, 2217, 7826, 4257, 365, 2354, 29889],
        special: [1, 9038, 2501, 263, 931, 29892, 727, 471, 263, 2217, 7826, 4257, 365, 2354, 29889],
        decoded: "Once upon a time, there was a little girl named Lily.",
      },
      {
        text: "  leading spaces and   multiple   spaces  ",
        raw: [259, 8236, 8162, 322, 259, 2999, 259, 8162, 259],
        special: [1, 259, 8236, 8162, 322, 259, 2999, 259, 8162, 259],
        decoded: "  leading spaces and   multiple   spaces  ",
      },
      {
        text: "Numbers: 12345 and 3.14159, 2024-01-01",
        raw: [
          11848, 2596, 29901, 29871, 29896, 29906, 29941, 29946, 29945, 322, 29871, 29941, 29889, 29896,
          29946, 29896, 29945, 29929, 29892, 29871, 29906, 29900, 29906, 29946, 29899, 29900, 29896, 29899,
          29900, 29896,
        ],
        special: [
          1, 11848, 2596, 29901, 29871, 29896, 29906, 29941, 29946, 29945, 322, 29871, 29941, 29889, 29896,
          29946, 29896, 29945, 29929, 29892, 29871, 29906, 29900, 29906, 29946, 29899, 29900, 29896, 29899,
          29900, 29896,
        ],
        decoded: "Numbers: 12345 and 3.14159, 2024-01-01",
      },
      {
        text: "Line one\nLine two\n\n\tTabbed\r\nCRLF",
        raw: [7407, 697, 13, 3542, 1023, 13, 13, 12, 8863, 2580, 30004, 13, 29907, 2241, 29943],
        special: [1, 7407, 697, 13, 3542, 1023, 13, 13, 12, 8863, 2580, 30004, 13, 29907, 2241, 29943],
        decoded: "Line one\nLine two\n\n\tTabbed\r\nCRLF",
      },
      {
        text: "Unicode: café naïve 日本語 Ω≈ç√ 🙂👍🏽",
        raw: [
          23862, 29901, 274, 28059, 1055, 30085, 345, 29871, 30325, 30346, 30968, 29871, 30357, 30583, 30019,
          30562, 29871, 243, 162, 156, 133, 243, 162, 148, 144, 243, 162, 146, 192,
        ],
        special: [
          1, 23862, 29901, 274, 28059, 1055, 30085, 345, 29871, 30325, 30346, 30968, 29871, 30357, 30583,
          30019, 30562, 29871, 243, 162, 156, 133, 243, 162, 148, 144, 243, 162, 146, 192,
        ],
        decoded: "Unicode: café naïve 日本語 Ω≈ç√ 🙂👍🏽",
      },
      {
        text: "don't I'll we're THEY'RE",
        raw: [1016, 29915, 29873, 306, 29915, 645, 591, 29915, 276, 6093, 29979, 29915, 1525],
        special: [1, 1016, 29915, 29873, 306, 29915, 645, 591, 29915, 276, 6093, 29979, 29915, 1525],
        decoded: "don't I'll we're THEY'RE",
      },
      { text: " ", raw: [259], special: [1, 259], decoded: " " },
      { text: "", raw: [], special: [1], decoded: "" },
      {
        text: "<s>Hello</s> world<unk>",
        raw: [1, 15043, 2, 259, 11526, 0],
        special: [1, 1, 15043, 2, 259, 11526, 0],
        decoded: "Hello  world",
      },
    ],
  },
  phi3: {
    vocab: 32000,
    cases: [
      {
        text: "Once upon a time, there was a little girl named Lily.",
        raw: [9038, 2501, 263, 931, 29892, 727, 471, 263, 2217, 7826, 4257, 365, 2354, 29889],
        special: [1, 9038, 2501, 263, 931, 29892, 727, 471, 263, 2217, 7826, 4257, 365, 2354, 29889],
        decoded: "Once upon a time, there was a little girl named Lily.",
      },
      {
        text: "  leading spaces and   multiple   spaces  ",
        raw: [259, 8236, 8162, 322, 259, 2999, 259, 8162, 259],
        special: [1, 259, 8236, 8162, 322, 259, 2999, 259, 8162, 259],
        decoded: "  leading spaces and   multiple   spaces  ",
      },
      {
        text: "Numbers: 12345 and 3.14159, 2024-01-01",
        raw: [
          11848, 2596, 29901, 29871, 29896, 29906, 29941, 29946, 29945, 322, 29871, 29941, 29889, 29896,
          29946, 29896, 29945, 29929, 29892, 29871, 29906, 29900, 29906, 29946, 29899, 29900, 29896, 29899,
          29900, 29896,
        ],
        special: [
          1, 11848, 2596, 29901, 29871, 29896, 29906, 29941, 29946, 29945, 322, 29871, 29941, 29889, 29896,
          29946, 29896, 29945, 29929, 29892, 29871, 29906, 29900, 29906, 29946, 29899, 29900, 29896, 29899,
          29900, 29896,
        ],
        decoded: "Numbers: 12345 and 3.14159, 2024-01-01",
      },
      {
        text: "Line one\nLine two\n\n\tTabbed\r\nCRLF",
        raw: [7407, 697, 13, 3542, 1023, 13, 13, 12, 8863, 2580, 30004, 13, 29907, 2241, 29943],
        special: [1, 7407, 697, 13, 3542, 1023, 13, 13, 12, 8863, 2580, 30004, 13, 29907, 2241, 29943],
        decoded: "Line one\nLine two\n\n\tTabbed\r\nCRLF",
      },
      {
        text: "Unicode: café naïve 日本語 Ω≈ç√ 🙂👍🏽",
        raw: [
          23862, 29901, 274, 28059, 1055, 30085, 345, 29871, 30325, 30346, 30968, 29871, 30357, 30583, 30019,
          30562, 29871, 243, 162, 156, 133, 243, 162, 148, 144, 243, 162, 146, 192,
        ],
        special: [
          1, 23862, 29901, 274, 28059, 1055, 30085, 345, 29871, 30325, 30346, 30968, 29871, 30357, 30583,
          30019, 30562, 29871, 243, 162, 156, 133, 243, 162, 148, 144, 243, 162, 146, 192,
        ],
        decoded: "Unicode: café naïve 日本語 Ω≈ç√ 🙂👍🏽",
      },
      {
        text: "don't I'll we're THEY'RE",
        raw: [1016, 29915, 29873, 306, 29915, 645, 591, 29915, 276, 6093, 29979, 29915, 1525],
        special: [1, 1016, 29915, 29873, 306, 29915, 645, 591, 29915, 276, 6093, 29979, 29915, 1525],
        decoded: "don't I'll we're THEY'RE",
      },
      { text: " ", raw: [259], special: [1, 259], decoded: " " },
      { text: "", raw: [], special: [1], decoded: "" },
      {
        text: "<s>Hello</s> world<unk>",
        raw: [1, 15043, 2, 259, 11526, 0],
        special: [1, 1, 15043, 2, 259, 11526, 0],
        decoded: "Hello  world",
      },
    ],
  },
  gemma2: {
    vocab: 2048,
    cases: [
      {
        text: "Once upon a time, there was a little girl named Lily.",
        raw: [408, 431, 275, 389, 28, 391, 294, 275, 383, 440, 458, 371, 30],
        special: [408, 431, 275, 389, 28, 391, 294, 275, 383, 440, 458, 371, 30],
        decoded: "Once upon a time, there was a little girl named Lily.",
      },
      {
        text: "  leading spaces and   multiple   spaces  ",
        raw: [237, 521, 378, 304, 474, 789, 99, 283, 557, 573, 92, 100, 1017, 321, 557, 474, 789, 99, 557],
        special: [
          237, 521, 378, 304, 474, 789, 99, 283, 557, 573, 92, 100, 1017, 321, 557, 474, 789, 99, 557,
        ],
        decoded: "  leading spaces and   multiple   spaces  ",
      },
      {
        text: "Numbers: 12345 and 3.14159, 2024-01-01",
        raw: [
          62, 477, 672, 99, 42, 1375, 1320, 283, 1085, 30, 1401, 28, 1253, 32, 34, 36, 29, 32, 33, 29, 32, 33,
        ],
        special: [
          62, 477, 672, 99, 42, 1375, 1320, 283, 1085, 30, 1401, 28, 1253, 32, 34, 36, 29, 32, 33, 29, 32, 33,
        ],
        decoded: "Numbers: 12345 and 3.14159, 2024-01-01",
      },
      {
        text: "Line one\nLine two\n\n\tTabbed\r\nCRLF",
        raw: [60, 801, 647, 215, 60, 801, 879, 215, 215, 214, 68, 81, 1177, 218, 215, 51, 66, 60, 54],
        special: [60, 801, 647, 215, 60, 801, 879, 215, 215, 214, 68, 81, 1177, 218, 215, 51, 66, 60, 54],
        decoded: "Line one\nLine two\n\n\tTabbed\r\nCRLF",
      },
      {
        text: "Unicode: café naïve 日本語 Ω≈ç√ 🙂👍🏽",
        raw: [
          69, 94, 478, 95, 969, 42, 506, 86, 744, 1371, 237, 179, 1361, 267, 122, 181, 120, 269, 237, 155,
          119, 175, 248, 247, 144, 117, 175, 247, 265, 1355, 264, 241, 910, 256, 252, 910, 254, 138,
        ],
        special: [
          69, 94, 478, 95, 969, 42, 506, 86, 744, 1371, 237, 179, 1361, 267, 122, 181, 120, 269, 237, 155,
          119, 175, 248, 247, 144, 117, 175, 247, 265, 1355, 264, 241, 910, 256, 252, 910, 254, 138,
        ],
        decoded: "Unicode: café naïve 日本語 Ω≈ç√ 🙂👍🏽",
      },
      {
        text: "don't I'll we're THEY'RE",
        raw: [84, 299, 423, 377, 1582, 398, 1284, 302, 56, 53, 73, 23, 66, 53],
        special: [84, 299, 423, 377, 1582, 398, 1284, 302, 56, 53, 73, 23, 66, 53],
        decoded: "don't I'll we're THEY'RE",
      },
      { text: " ", raw: [237], special: [237], decoded: " " },
      { text: "", raw: [], special: [], decoded: "" },
      {
        text: "<|im_start|>user\nHi there<|im_end|>\n<|endoftext|>",
        raw: [1, 1026, 293, 215, 1898, 391, 2, 215, 0],
        special: [1, 1026, 293, 215, 1898, 391, 2, 215, 0],
        decoded: "user\nHi there\n",
      },
    ],
  },
};

/** Families whose tokenizer.json post-processor (TemplateProcessing) puts BOS first; the others add nothing. */
const ADDS_BOS = new Set(["llama2", "mistral", "phi3", "llama3"]);

describe("HfTokenizer matches the Hugging Face tokenizers library", () => {
  for (const [family, ref] of Object.entries(PEER)) {
    it(`${family}: ids without and with special tokens, decoded text`, () => {
      const tok = HfTokenizer.fromFile(sharedPath(`fixtures/hf-families/${family}/tokenizer.json`));
      expect(tok.vocabSize).toBe(ref.vocab);
      expect(tok.addBos).toBe(ADDS_BOS.has(family));
      expect(tok.addEos).toBe(false);
      for (const c of ref.cases) {
        expect(tok.encode(c.text), JSON.stringify(c.text)).toEqual(c.raw);
        expect(tok.encode(c.text, { special: true }), JSON.stringify(c.text)).toEqual(c.special);
        expect(tok.decodeAll(c.raw), JSON.stringify(c.text)).toBe(c.decoded);
      }
      expect(tok.decodeAll([])).toBe("");
    });
  }
});

/**
 * A GGUF tokenizer laid out as llama.cpp's converter writes a byte-level BPE: tokens by id, merges as
 * "a b", added special tokens as control (3), BOS flag from the post-processor.
 */
function ggufOf(family: string, pre: string): GgufTokenizer {
  const json = JSON.parse(readFileSync(sharedPath(`fixtures/hf-families/${family}/tokenizer.json`), "utf8"));
  const tokens: string[] = [];
  const types: number[] = [];
  for (const [t, id] of Object.entries(json.model.vocab as Record<string, number>)) {
    tokens[id] = t;
    types[id] = 1;
  }
  for (const a of json.added_tokens) {
    tokens[a.id] = a.content;
    types[a.id] = a.special ? 3 : 4;
  }
  const bos = json.post_processor?.type === "TemplateProcessing";
  return {
    model: "gpt2",
    pre,
    tokens,
    tokenTypes: Int32Array.from(types),
    merges: (json.model.merges as [string, string][]).map(([a, b]) => `${a} ${b}`),
    ...(bos
      ? { bosId: json.post_processor.special_tokens[json.post_processor.single[0].SpecialToken.id].ids[0] }
      : {}),
    addBos: bos,
    chatTemplate: "{{ messages[0]['content'] }}",
  };
}

describe("HfTokenizer.fromGguf (a gpt2 vocabulary stored in GGUF) matches the tokenizers library", () => {
  for (const [family, pre] of [
    ["llama3", "llama-bpe"],
    ["qwen2", "qwen2"],
    ["smollm2", "smollm"],
  ]) {
    it(`${family} as tokenizer.ggml.pre "${pre}"`, () => {
      const tok = HfTokenizer.fromGguf(ggufOf(family, pre), "m.gguf");
      expect(tok.vocabSize).toBe(PEER[family].vocab);
      expect(tok.addBos).toBe(family === "llama3");
      for (const c of PEER[family].cases) {
        expect(tok.encode(c.text), JSON.stringify(c.text)).toEqual(c.raw);
        expect(tok.encode(c.text, { special: true }), JSON.stringify(c.text)).toEqual(c.special);
        expect(tok.decodeAll(c.raw)).toBe(c.decoded);
      }
      expect(tok.chatTemplate).toBe("{{ messages[0]['content'] }}");
    });
  }

  it("the pre-tokenizer regexes are the families' own", () => {
    for (const [family, pre] of [
      ["llama3", "llama-bpe"],
      ["qwen2", "qwen2"],
    ]) {
      const json = JSON.parse(
        readFileSync(sharedPath(`fixtures/hf-families/${family}/tokenizer.json`), "utf8"),
      );
      const ours = GGUF_PRE_TOKENIZERS[pre].preTokenizer as { pretokenizers: { pattern?: unknown }[] };
      expect(ours.pretokenizers[0].pattern).toEqual(json.pre_tokenizer.pretokenizers[0].pattern);
    }
  });

  it("names what it cannot read", () => {
    const g = ggufOf("qwen2", "qwen2");
    expect(() => HfTokenizer.fromGguf({ ...g, pre: "deepseek-coder" }, "m.gguf")).toThrow(
      /m.gguf \(tokenizer.ggml.\*\): tokenizer.ggml.pre "deepseek-coder" is not supported/,
    );
    expect(() => HfTokenizer.fromGguf({ ...g, model: "llama" }, "m.gguf")).toThrow(/is not a byte-level BPE/);
    expect(() => HfTokenizer.fromGguf({ ...g, merges: [...(g.merges ?? []), "zz qq"] }, "m.gguf")).toThrow(
      /m.gguf \(tokenizer.ggml.\*\): model.merges\[\d+\] .* the unknown token "zz"/,
    );
    const dup = [...g.tokens];
    dup[5] = dup[6];
    expect(() => HfTokenizer.fromGguf({ ...g, tokens: dup }, "m.gguf")).toThrow(/appears twice/);
  });
});
