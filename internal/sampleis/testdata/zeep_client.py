"""Call the sample population register with Python zeep, a SOAP client that
nobody in this project wrote: read the WSDL from a URL, call getPerson at an
endpoint with the X-Road headers, print the person as JSON.

usage: zeep_client.py WSDL_URL ENDPOINT CLIENT SERVICE FIN
CLIENT is INSTANCE/CLASS/CODE[/SUBSYSTEM]; SERVICE is
INSTANCE/CLASS/CODE/SUBSYSTEM/SERVICE[/VERSION].
"""
import json
import sys
import uuid

from zeep import Client, Settings

wsdl_url, endpoint, client_id, service_id, fin = sys.argv[1:6]

client = Client(wsdl_url, settings=Settings(strict=True))
service = client.create_service(
    "{http://qapi.az/xsd/population-register}populationRegisterBinding", endpoint)


def identifier(text, object_type):
    parts = text.split("/")
    out = {"objectType": object_type, "xRoadInstance": parts[0],
           "memberClass": parts[1], "memberCode": parts[2]}
    if object_type == "SERVICE":
        if parts[3]:
            out["subsystemCode"] = parts[3]
        out["serviceCode"] = parts[4]
        if len(parts) > 5:
            out["serviceVersion"] = parts[5]
    elif len(parts) > 3:
        out["subsystemCode"] = parts[3]
    return out


headers = {
    "client": identifier(client_id,
                         "SUBSYSTEM" if client_id.count("/") == 3 else "MEMBER"),
    "service": identifier(service_id, "SERVICE"),
    "id": uuid.uuid4().hex,
    "userId": "AZ0000001",
    "issue": "zeep-test",
    "protocolVersion": "4.0",
}
result = service.getPerson(fin=fin, _soapheaders=headers)
body = getattr(result, "body", None) or result
person = body["person"] if "person" in body else body
print(json.dumps({k: str(person[k]) for k in
                  ("fin", "givenName", "surname", "patronymic", "birthDate")},
                 ensure_ascii=False))
