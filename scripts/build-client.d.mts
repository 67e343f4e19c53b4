/** Types for build-client.mjs (plain JavaScript so `npm start` needs no TypeScript loader to build). */
export declare const CLIENT_SOURCES: string[];
export declare function buildClient(options?: { outDir?: string; minify?: boolean; sourcemap?: boolean; quiet?: boolean }): Promise<{ outDir: string; bytes: number }>;
