/**
 * Values user code may throw that break a catch reading their properties blindly: nothing,
 * primitives, objects without `message`, getters that throw, a Proxy whose every read throws,
 * a frozen error (pino's serializer tags the error it logs), an object without a prototype
 * (`String()` throws on it).
 */
export function oddThrownValues(): Record<string, unknown> {
  const boom = () => {
    throw new Error('getter threw');
  };
  const getters = {};
  for (const k of ['message', 'code', 'details', 'cause', 'name', 'stack', 'status']) {
    Object.defineProperty(getters, k, { get: boom, enumerable: true });
  }
  const errorWithGetter = new Error('hidden');
  Object.defineProperty(errorWithGetter, 'message', { get: boom });
  Object.defineProperty(errorWithGetter, 'details', { get: boom, enumerable: true });
  return {
    null: null,
    undefined: undefined,
    string: 'a plain string',
    number: 42,
    object: { reason: 'no message field' },
    getters,
    errorWithGetter,
    proxy: new Proxy({}, { get: boom }),
    frozen: Object.freeze(new Error('frozen error')),
    noPrototype: Object.create(null),
  };
}
