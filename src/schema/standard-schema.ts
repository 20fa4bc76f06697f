import { NatskitError } from '../errors/natskit-error.js';

/**
 * The Standard Schema interface (standardschema.dev), copied structurally so natskit depends on
 * no schema library: zod, valibot and arktype schemas all fit it.
 */
export interface StandardSchemaV1<Input = unknown, Output = Input> {
  readonly '~standard': {
    readonly version: 1;
    readonly vendor: string;
    readonly validate: (
      value: unknown,
    ) => StandardSchemaResult<Output> | Promise<StandardSchemaResult<Output>>;
    readonly types?: { readonly input: Input; readonly output: Output } | undefined;
  };
}

/** The result of a Standard Schema validation. */
export type StandardSchemaResult<Output> =
  | { readonly value: Output; readonly issues?: undefined }
  | {
      readonly issues: ReadonlyArray<{
        readonly message: string;
        readonly path?: ReadonlyArray<PropertyKey | { readonly key: PropertyKey }> | undefined;
      }>;
    };

/**
 * Validates with a Standard Schema; returns the (possibly transformed) value or throws
 * `VALIDATION_FAILED` with the issues. `context.label` names what failed (else a KV key's value).
 */
export async function validate<T>(
  schema: StandardSchemaV1<unknown, T> | undefined,
  value: unknown,
  context: Readonly<Record<string, unknown>>,
): Promise<T> {
  if (!schema) return value as T;
  const result = await schema['~standard'].validate(value);
  if (result.issues) {
    const issues = result.issues.map((i) => ({
      message: i.message,
      path: (i.path ?? []).map((p) => (typeof p === 'object' ? p.key : p)).join('.'),
    }));
    throw new NatskitError(
      'VALIDATION_FAILED',
      `${typeof context.label === 'string' ? context.label : `${context.direction === 'read' ? 'stored value' : 'value'} for key ${String(context.key)}`} failed validation: ${issues
        .map((i) => `${i.path || '$'}: ${i.message}`)
        .join('; ')}`,
      { details: { ...context, issues } },
    );
  }
  return result.value;
}
