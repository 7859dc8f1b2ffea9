// Calls a live HKMS with Scaleway's official TypeScript SDK and reports, per invalid request,
// which error class the SDK raised.  Input (argv[2]): JSON {url, access_key, secret_key,
// project_id, secret_id, key_id}.  Output: one JSON line per case {case, name, invalid_arguments}.
import { createClient, Errors } from '@scaleway/sdk-client'
import { Secretv1beta1 } from '@scaleway/sdk-secret'
import { KeyManagerv1alpha1 } from '@scaleway/sdk-key-manager'

const input = JSON.parse(process.argv[2])
const client = createClient({
  accessKey: input.access_key,
  secretKey: input.secret_key,
  apiURL: input.url,
  defaultProjectId: input.project_id,
  defaultRegion: 'fr-par',
})
const secrets = new Secretv1beta1.API(client)
const keys = new KeyManagerv1alpha1.API(client)
const data = Buffer.from('x').toString('base64')

const cases = {
  crc_negative: () => secrets.createSecretVersion({ secretId: input.secret_id, data, dataCrc32: -1 }),
  crc_too_big: () => secrets.createSecretVersion({ secretId: input.secret_id, data, dataCrc32: 2 ** 32 }),
  long_name: () => secrets.createSecret({ name: 'n'.repeat(256), projectId: input.project_id, protected: false, tags: [] }),
  long_description: () =>
    secrets.createSecret({ name: 'd', description: 'd'.repeat(4097), projectId: input.project_id, protected: false, tags: [] }),
  owner_without_product: () => secrets.addSecretOwner({ secretId: input.secret_id }),
  plaintext_not_base64: () => keys.encrypt({ keyId: input.key_id, plaintext: '%%% not base64' }),
  rotation_period_1h: () => keys.updateKey({ keyId: input.key_id, rotationPolicy: { rotationPeriod: '1h' } }),
}

for (const [name, call] of Object.entries(cases)) {
  try {
    await call()
    console.log(JSON.stringify({ case: name, name: 'no error' }))
  } catch (error) {
    console.log(
      JSON.stringify({
        case: name,
        name: error?.name,
        invalid_arguments: error instanceof Errors.InvalidArgumentsError,
        message: String(error?.message).slice(0, 300),
      }),
    )
  }
}
