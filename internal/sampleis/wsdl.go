package sampleis

import (
	"bytes"
	"encoding/xml"
	"strings"
)

// WSDL returns the register's service description with its SOAP endpoint
// at address. It is document/literal; every operation declares the X-Road
// headers as soap:header parts, and the X-Road schemas are inlined so that
// a client needs nothing from the network to generate code.
func WSDL(address string) []byte {
	var esc bytes.Buffer
	xml.EscapeText(&esc, []byte(address))
	return []byte(strings.Replace(wsdlTemplate, "{{ADDRESS}}", esc.String(), 1))
}

const wsdlTemplate = `<?xml version="1.0" encoding="UTF-8"?>
<wsdl:definitions name="populationRegister"
    targetNamespace="http://qapi.az/xsd/population-register"
    xmlns:tns="http://qapi.az/xsd/population-register"
    xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/"
    xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/"
    xmlns:xs="http://www.w3.org/2001/XMLSchema"
    xmlns:xrd="http://x-road.eu/xsd/xroad.xsd"
    xmlns:id="http://x-road.eu/xsd/identifiers">
  <wsdl:documentation>Əhalinin Dövlət Reyestri (sample): synthetic population
    register for the Qapı security server's tests.</wsdl:documentation>
  <wsdl:types>
    <xs:schema targetNamespace="http://x-road.eu/xsd/identifiers"
        elementFormDefault="qualified">
      <xs:simpleType name="XRoadObjectType">
        <xs:restriction base="xs:string">
          <xs:enumeration value="MEMBER"/>
          <xs:enumeration value="SUBSYSTEM"/>
          <xs:enumeration value="SERVICE"/>
        </xs:restriction>
      </xs:simpleType>
      <xs:attribute name="objectType" type="id:XRoadObjectType"/>
      <xs:complexType name="XRoadClientIdentifierType">
        <xs:sequence>
          <xs:element name="xRoadInstance" type="xs:string"/>
          <xs:element name="memberClass" type="xs:string"/>
          <xs:element name="memberCode" type="xs:string"/>
          <xs:element name="subsystemCode" type="xs:string" minOccurs="0"/>
        </xs:sequence>
        <xs:attribute ref="id:objectType" use="required"/>
      </xs:complexType>
      <xs:complexType name="XRoadServiceIdentifierType">
        <xs:sequence>
          <xs:element name="xRoadInstance" type="xs:string"/>
          <xs:element name="memberClass" type="xs:string"/>
          <xs:element name="memberCode" type="xs:string"/>
          <xs:element name="subsystemCode" type="xs:string" minOccurs="0"/>
          <xs:element name="serviceCode" type="xs:string"/>
          <xs:element name="serviceVersion" type="xs:string" minOccurs="0"/>
        </xs:sequence>
        <xs:attribute ref="id:objectType" use="required"/>
      </xs:complexType>
    </xs:schema>
    <xs:schema targetNamespace="http://x-road.eu/xsd/xroad.xsd"
        elementFormDefault="qualified">
      <xs:import namespace="http://x-road.eu/xsd/identifiers"/>
      <xs:element name="client" type="id:XRoadClientIdentifierType"/>
      <xs:element name="service" type="id:XRoadServiceIdentifierType"/>
      <xs:element name="id" type="xs:string"/>
      <xs:element name="userId" type="xs:string"/>
      <xs:element name="issue" type="xs:string"/>
      <xs:element name="protocolVersion" type="xs:string"/>
      <xs:element name="requestHash">
        <xs:complexType>
          <xs:simpleContent>
            <xs:extension base="xs:string">
              <xs:attribute name="algorithmId" type="xs:string"/>
            </xs:extension>
          </xs:simpleContent>
        </xs:complexType>
      </xs:element>
    </xs:schema>
    <xs:schema targetNamespace="http://qapi.az/xsd/population-register"
        elementFormDefault="qualified">
      <xs:complexType name="Person">
        <xs:sequence>
          <xs:element name="fin" type="xs:string"/>
          <xs:element name="givenName" type="xs:string"/>
          <xs:element name="surname" type="xs:string"/>
          <xs:element name="patronymic" type="xs:string"/>
          <xs:element name="gender" type="xs:string"/>
          <xs:element name="birthDate" type="xs:date"/>
          <xs:element name="birthPlace" type="xs:string"/>
          <xs:element name="address" type="xs:string"/>
        </xs:sequence>
      </xs:complexType>
      <xs:element name="getPerson">
        <xs:complexType>
          <xs:sequence>
            <xs:element name="fin" type="xs:string"/>
          </xs:sequence>
        </xs:complexType>
      </xs:element>
      <xs:element name="getPersonResponse">
        <xs:complexType>
          <xs:sequence>
            <xs:element name="person" type="tns:Person"/>
          </xs:sequence>
        </xs:complexType>
      </xs:element>
      <xs:element name="searchPersons">
        <xs:complexType>
          <xs:sequence>
            <xs:element name="surname" type="xs:string" minOccurs="0"/>
            <xs:element name="givenName" type="xs:string" minOccurs="0"/>
            <xs:element name="birthYear" type="xs:string" minOccurs="0"/>
            <xs:element name="maxResults" type="xs:int" minOccurs="0"/>
            <xs:element name="purpose" type="xs:string" minOccurs="0"/>
          </xs:sequence>
        </xs:complexType>
      </xs:element>
      <xs:element name="searchPersonsResponse">
        <xs:complexType>
          <xs:sequence>
            <xs:element name="person" type="tns:Person" minOccurs="0" maxOccurs="20"/>
          </xs:sequence>
        </xs:complexType>
      </xs:element>
    </xs:schema>
  </wsdl:types>
  <wsdl:message name="requestheader">
    <wsdl:part name="client" element="xrd:client"/>
    <wsdl:part name="service" element="xrd:service"/>
    <wsdl:part name="userId" element="xrd:userId"/>
    <wsdl:part name="id" element="xrd:id"/>
    <wsdl:part name="issue" element="xrd:issue"/>
    <wsdl:part name="protocolVersion" element="xrd:protocolVersion"/>
  </wsdl:message>
  <wsdl:message name="getPerson">
    <wsdl:part name="body" element="tns:getPerson"/>
  </wsdl:message>
  <wsdl:message name="getPersonResponse">
    <wsdl:part name="body" element="tns:getPersonResponse"/>
  </wsdl:message>
  <wsdl:message name="searchPersons">
    <wsdl:part name="body" element="tns:searchPersons"/>
  </wsdl:message>
  <wsdl:message name="searchPersonsResponse">
    <wsdl:part name="body" element="tns:searchPersonsResponse"/>
  </wsdl:message>
  <wsdl:portType name="populationRegisterPortType">
    <wsdl:operation name="getPerson">
      <wsdl:input message="tns:getPerson"/>
      <wsdl:output message="tns:getPersonResponse"/>
    </wsdl:operation>
    <wsdl:operation name="searchPersons">
      <wsdl:input message="tns:searchPersons"/>
      <wsdl:output message="tns:searchPersonsResponse"/>
    </wsdl:operation>
  </wsdl:portType>
  <wsdl:binding name="populationRegisterBinding" type="tns:populationRegisterPortType">
    <soap:binding style="document" transport="http://schemas.xmlsoap.org/soap/http"/>
    <wsdl:operation name="getPerson">
      <soap:operation soapAction="" style="document"/>
      <wsdl:input>
        <soap:body parts="body" use="literal"/>
        <soap:header message="tns:requestheader" part="client" use="literal"/>
        <soap:header message="tns:requestheader" part="service" use="literal"/>
        <soap:header message="tns:requestheader" part="userId" use="literal"/>
        <soap:header message="tns:requestheader" part="id" use="literal"/>
        <soap:header message="tns:requestheader" part="issue" use="literal"/>
        <soap:header message="tns:requestheader" part="protocolVersion" use="literal"/>
      </wsdl:input>
      <wsdl:output>
        <soap:body parts="body" use="literal"/>
        <soap:header message="tns:requestheader" part="client" use="literal"/>
        <soap:header message="tns:requestheader" part="service" use="literal"/>
        <soap:header message="tns:requestheader" part="id" use="literal"/>
        <soap:header message="tns:requestheader" part="protocolVersion" use="literal"/>
      </wsdl:output>
    </wsdl:operation>
    <wsdl:operation name="searchPersons">
      <soap:operation soapAction="" style="document"/>
      <wsdl:input>
        <soap:body parts="body" use="literal"/>
        <soap:header message="tns:requestheader" part="client" use="literal"/>
        <soap:header message="tns:requestheader" part="service" use="literal"/>
        <soap:header message="tns:requestheader" part="userId" use="literal"/>
        <soap:header message="tns:requestheader" part="id" use="literal"/>
        <soap:header message="tns:requestheader" part="issue" use="literal"/>
        <soap:header message="tns:requestheader" part="protocolVersion" use="literal"/>
      </wsdl:input>
      <wsdl:output>
        <soap:body parts="body" use="literal"/>
        <soap:header message="tns:requestheader" part="client" use="literal"/>
        <soap:header message="tns:requestheader" part="service" use="literal"/>
        <soap:header message="tns:requestheader" part="id" use="literal"/>
        <soap:header message="tns:requestheader" part="protocolVersion" use="literal"/>
      </wsdl:output>
    </wsdl:operation>
  </wsdl:binding>
  <wsdl:service name="populationRegister">
    <wsdl:port name="populationRegisterPort" binding="tns:populationRegisterBinding">
      <soap:address location="{{ADDRESS}}"/>
    </wsdl:port>
  </wsdl:service>
</wsdl:definitions>
`
