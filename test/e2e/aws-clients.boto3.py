"""boto3 against Keyhold's AWS KMS endpoint (argv[1]); prints what it saw as JSON for aws-clients.test.ts."""
import json
import sys

import boto3

kms = boto3.client("kms", endpoint_url=sys.argv[1], region_name="us-east-1")
data_key = kms.generate_data_key(KeyId="alias/reports", KeySpec="AES_256", EncryptionContext={"job": "nightly"})
blob = kms.encrypt(KeyId="alias/reports", Plaintext=b"quarterly numbers")["CiphertextBlob"]
plaintext = kms.decrypt(CiphertextBlob=blob)["Plaintext"]
keys = kms.list_keys()["Keys"]
try:
    kms.encrypt(KeyId="alias/reports-frozen", Plaintext=b"x")
    disabled = "no error"
except kms.exceptions.DisabledException as error:
    disabled = error.response["Error"]["Code"]
try:
    kms.generate_data_key(KeyId="alias/other-team", KeySpec="AES_256")
    denied = "no error"
except kms.exceptions.ClientError as error:
    denied = error.response["Error"]["Code"]
print(json.dumps({
    "data_key_bytes": len(data_key["Plaintext"]),
    "round_trip": plaintext.decode(),
    "keys_listed": len(keys),
    "disabled": disabled,
    "denied": denied,
}))
