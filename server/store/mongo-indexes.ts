/**
 * Index creation for the MongoDB adapter that survives restarts and concurrent starts on every server:
 * - one index per `createIndexes` call: FerretDB 1.24 closes the connection when one call names several
 *   indexes that already exist, which made every second start fail;
 * - indexes that already exist (same name, same key) are skipped, and a failed creation is re-checked: when
 *   the index is there afterwards (another process made it at the same moment), that is success.
 */
import { MongoServerError, type Collection, type Document, type IndexDescription } from 'mongodb';
import { isUnavailable } from './mongo-errors.ts';

/** One index: key and name always; `unique`, `expireAfterSeconds` when wanted. */
export interface IndexSpec extends IndexDescription {
  key: Record<string, 1 | -1>;
  name: string;
}

/** Makes sure every spec exists on `collection`, creating missing ones one per call. */
export async function ensureIndexes<T extends Document>(collection: Collection<T>, specs: readonly IndexSpec[]): Promise<void> {
  let existing = await listIndexKeys(collection);
  for (const spec of specs) {
    if (existing.get(spec.name) === keyString(spec.key)) continue;
    try {
      await collection.createIndexes([spec]);
    } catch (error) {
      if (isUnavailable(error)) throw error;
      existing = await listIndexKeys(collection);
      if (existing.get(spec.name) !== keyString(spec.key)) throw error;
    }
  }
}

/** Index name → key pattern (as a string), or empty when the collection does not exist yet. */
async function listIndexKeys<T extends Document>(collection: Collection<T>): Promise<Map<string, string>> {
  try {
    const indexes = await collection.listIndexes().toArray();
    return new Map(indexes.map((index) => [String(index['name']), keyString(index['key'] as Document)]));
  } catch (error) {
    // NamespaceNotFound: nothing created yet.
    if (error instanceof MongoServerError && error.code === 26) return new Map();
    throw error;
  }
}

function keyString(key: Document): string {
  return JSON.stringify(Object.entries(key).map(([field, direction]) => [field, Number(direction)]));
}
