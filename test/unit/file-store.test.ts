import { describe, expect, it } from 'vitest';
import { openFileStore, sliceSource, StoreClosed } from '../../client/media/file-store.ts';

// The in-memory store (the fallback when a browser gives no OPFS) under Node; the disk store runs in the
// browser tests (test/e2e/files.test.ts, large-file.test.ts), whose cards report `data-store="disk"`.
describe('file store (memory)', () => {
  it('takes ranges in any order, makes reads wait for their bytes, and gives back the exact file', async () => {
    const file = new Uint8Array(1000).map((_, i) => (i * 7) % 251);
    const store = await openFileStore(file.length, { memoryCapBytes: 10_000, memoryOnly: true });
    expect(store.where).toBe('memory');
    let read: Uint8Array | undefined;
    const pending = store.read(100, 300).then((b) => (read = b));
    await store.write(800, file.subarray(800));
    await store.write(0, file.subarray(0, 200));
    await Promise.resolve();
    expect(read).toBeUndefined(); // [200, 300) has not arrived
    expect(await store.readSome(0, 5000)).toEqual(file.subarray(0, 200));
    await store.write(200, file.subarray(200, 800));
    await pending;
    expect(read).toEqual(file.subarray(100, 300));
    expect(store.held).toBe(file.length);
    expect(new Uint8Array(await sliceSource(store).slice(990, 1000).arrayBuffer())).toEqual(file.subarray(990));
    const whole = await store.complete('application/octet-stream');
    expect(new Uint8Array(await whole.arrayBuffer())).toEqual(file);
  });

  it('refuses bytes outside the file and files over the memory cap; discard stops waiting readers', async () => {
    const store = await openFileStore(10, { memoryCapBytes: 100, memoryOnly: true });
    await expect(store.write(8, new Uint8Array(3))).rejects.toThrow(RangeError);
    const waiting = store.read(0, 10);
    store.discard('cancelled');
    await expect(waiting).rejects.toBeInstanceOf(StoreClosed);
    await expect(openFileStore(101, { memoryCapBytes: 100, memoryOnly: true })).rejects.toBeInstanceOf(StoreClosed);
  });
});
