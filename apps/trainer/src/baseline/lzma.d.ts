declare module 'lzma' {
  export function compress(
    data: string | Uint8Array | number[],
    mode: number,
    onFinish: (result: number[] | Uint8Array | null, error?: unknown) => void,
    onProgress?: (percent: number) => void,
  ): void;
}
