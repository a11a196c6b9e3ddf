"""A python-zeep client of the registry WSDL, with the X-Road headers.

client.py request WSDL      print the request zeep writes for getPersonByPin
client.py call WSDL URL     call getPersonByPin at URL; print the name, or
                            "fault CODE MESSAGE" when the answer is a fault
"""
import sys

import zeep
from lxml import etree

mode, wsdl = sys.argv[1], sys.argv[2]
client = zeep.Client(wsdl)
headers = {
    "client": {"objectType": "SUBSYSTEM", "xRoadInstance": "AZ", "memberClass": "GOV",
               "memberCode": "1400057421", "subsystemCode": "emas"},
    "service": {"objectType": "SERVICE", "xRoadInstance": "AZ", "memberClass": "GOV",
                "memberCode": "1700038881", "subsystemCode": "registry",
                "serviceCode": "getPersonByPin", "serviceVersion": "v2"},
    "id": "0f6a8f4e-3b7c-4a59-9f2d-8c1e5b7a2d10",
    "userId": "AZ5ZHK3PL",
    "issue": "ERI-2026/4471",
    "protocolVersion": "4.0",
}
if mode == "request":
    envelope = client.create_message(client.service, "getPersonByPin", pin="5ZHK3PL",
                                      _soapheaders=headers)
    sys.stdout.buffer.write(etree.tostring(envelope, xml_declaration=True,
                                           encoding="UTF-8"))
else:
    service = client.create_service("{http://asan.gov.az/producer}registryBinding",
                                     sys.argv[3])
    try:
        name = service.getPersonByPin(pin="5ZHK3PL", _soapheaders=headers)
        sys.stdout.write(name)
    except zeep.exceptions.Fault as f:
        sys.stdout.write("fault %s %s" % (f.code, f.message))
