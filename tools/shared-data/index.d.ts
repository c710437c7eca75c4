/** Absolute path of the shared data folder (INT21_SHARED, default ../shared beside the repo). */
export declare function sharedRoot(): string;
/** Absolute path of a shared file; throws an error naming the missing file. */
export declare function sharedPath(relative: string): string;
/** True when the shared file exists; never throws. */
export declare function hasShared(relative: string): boolean;
/** Well-known shared files, relative to the shared root. */
export declare const SHARED: Readonly<{
  stories260K: string;
  tok512: string;
  llama2Tokenizer: string;
  llama2SentencePiece: string;
  tinystoriesValid: string;
  wikitext2Test: string;
  wikitext2Raw: string;
}>;
