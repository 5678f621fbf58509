"""Code tables of Windows events: the names Microsoft documents for their numeric codes.

Logon types, 4625 failure reasons, NTSTATUS logon status codes, service types, Security
auditing task numbers, DNS record types and Sysmon's DNS query status, as Elastic's winlogbeat
pipelines carry them. Plain data, read by the mappings in ``windows_security`` and
``windows_sysmon`` and by the parser in ``windows``.
"""

from __future__ import annotations

LOGON_TYPES = {
    "0": "System", "2": "Interactive", "3": "Network", "4": "Batch", "5": "Service",
    "7": "Unlock", "8": "NetworkCleartext", "9": "NewCredentials", "10": "RemoteInteractive",
    "11": "CachedInteractive", "12": "CachedRemoteInteractive", "13": "CachedUnlock",
}  # fmt: skip

# 4625 FailureReason, "%%2313" and so on (msobjs.dll message table).
FAILURE_REASONS = {
    "2304": "An Error occured during Logon.",
    "2305": "The specified user account has expired.",
    "2306": "The NetLogon component is not active.",
    "2307": "Account locked out.",
    "2308": "The user has not been granted the requested logon type at this machine.",
    "2309": "The specified account's password has expired.",
    "2310": "Account currently disabled.",
    "2311": "Account logon time restriction violation.",
    "2312": "User not allowed to logon at this computer.",
    "2313": "Unknown user name or bad password.",
    "2314": "Domain sid inconsistent.",
    "2315": "Smartcard logon is required and was not used.",
}

# 4625 and 4776 Status and SubStatus (NTSTATUS), keys in lower case.
LOGON_STATUS = {
    "0xc000005e": "There are currently no logon servers available to service the logon"
    " request.",
    "0xc0000064": "User logon with misspelled or bad user account",
    "0xc000006a": "User logon with misspelled or bad password",
    "0xc000006d": "This is either due to a bad username or authentication information",
    "0xc000006e": "Unknown user name or bad password.",
    "0xc000006f": "User logon outside authorized hours",
    "0xc0000070": "User logon from unauthorized workstation",
    "0xc0000071": "User logon with expired password",
    "0xc0000072": "User logon to account disabled by administrator",
    "0xc00000dc": "Indicates the Sam Server was in the wrong state to perform the desired"
    " operation.",
    "0xc0000133": "Clocks between DC and other computer too far out of sync",
    "0xc000015b": "The user has not been granted the requested logon type (aka logon right)"
    " at this machine",
    "0xc000018c": "The logon request failed because the trust relationship between the"
    " primary domain and the trusted domain failed.",
    "0xc0000192": "An attempt was made to logon, but the Netlogon service was not started.",
    "0xc0000193": "User logon with expired account",
    "0xc0000224": "User is required to change password at next logon",
    "0xc0000225": "Evidently a bug in Windows and not a risk",
    "0xc0000234": "User logon with account locked",
    "0xc00002ee": "Failure Reason: An Error occurred during Logon",
    "0xc0000413": "Logon Failure: The machine you are logging onto is protected by an"
    " authentication firewall. The specified account is not allowed to authenticate to the"
    " machine.",
    "0xc0000371": "The local account store does not contain secret material for the"
    " specified account",
}  # fmt: skip

# 4697 ServiceType; 7045 writes the name itself ("user mode service").
SERVICE_TYPES = {
    "0x1": "Kernel Driver", "0x2": "File System Driver", "0x8": "Recognizer Driver",
    "0x10": "Win32 Own Process", "0x20": "Win32 Share Process",
    "0x110": "Interactive Own Process", "0x120": "Interactive Share Process",
}  # fmt: skip

# Security auditing task numbers (audit subcategories), for winlog.task where no name is given.
SECURITY_TASKS = {
    12288: "Security State Change", 12289: "Security System Extension",
    12290: "System Integrity", 12291: "IPsec Driver", 12292: "Other System Events",
    12544: "Logon", 12545: "Logoff", 12546: "Account Lockout", 12547: "IPsec Main Mode",
    12548: "Special Logon", 12549: "IPsec Quick Mode", 12550: "IPsec Extended Mode",
    12551: "Other Logon/Logoff Events", 12552: "Network Policy Server",
    12553: "User / Device Claims", 12554: "Group Membership",
    12800: "File System", 12801: "Registry", 12802: "Kernel Object", 12803: "SAM",
    12804: "Other Object Access Events", 12805: "Certification Services",
    12806: "Application Generated", 12807: "Handle Manipulation", 12808: "File Share",
    12809: "Filtering Platform Packet Drop", 12810: "Filtering Platform Connection",
    12811: "Detailed File Share", 12812: "Removable Storage", 12813: "Central Policy Staging",
    13056: "Sensitive Privilege Use", 13057: "Non Sensitive Privilege Use",
    13058: "Other Privilege Use Events", 13312: "Process Creation",
    13313: "Process Termination", 13314: "DPAPI Activity", 13315: "RPC Events",
    13316: "Plug and Play Events", 13317: "Token Right Adjusted Events",
    13568: "Audit Policy Change", 13569: "Authentication Policy Change",
    13570: "Authorization Policy Change", 13571: "MPSSVC Rule-Level Policy Change",
    13572: "Filtering Platform Policy Change", 13573: "Other Policy Change Events",
    13824: "User Account Management", 13825: "Computer Account Management",
    13826: "Security Group Management", 13827: "Distribution Group Management",
    13828: "Application Group Management", 13829: "Other Account Management Events",
    14080: "Directory Service Access", 14081: "Directory Service Changes",
    14082: "Directory Service Replication", 14083: "Detailed Directory Service Replication",
    14336: "Credential Validation", 14337: "Kerberos Service Ticket Operations",
    14338: "Other Account Logon Events", 14339: "Kerberos Authentication Service",
}  # fmt: skip

DNS_TYPES = {
    "1": "A", "2": "NS", "5": "CNAME", "6": "SOA", "12": "PTR", "13": "HINFO", "15": "MX",
    "16": "TXT", "28": "AAAA", "33": "SRV", "35": "NAPTR", "39": "DNAME", "43": "DS",
    "46": "RRSIG", "47": "NSEC", "48": "DNSKEY", "64": "SVCB", "65": "HTTPS", "255": "ANY",
}  # fmt: skip

# Sysmon 22 QueryStatus: the Win32/DNS error codes seen in practice; others are kept as numbers.
SYSMON_DNS_STATUS = {
    "0": "SUCCESS", "5": "ERROR_ACCESS_DENIED", "87": "ERROR_INVALID_PARAMETER",
    "123": "ERROR_INVALID_NAME", "1214": "ERROR_INVALID_NETNAME", "1223": "ERROR_CANCELLED",
    "1460": "ERROR_TIMEOUT", "9002": "DNS_ERROR_RCODE_SERVER_FAILURE",
    "9003": "DNS_ERROR_RCODE_NAME_ERROR", "9005": "DNS_ERROR_RCODE_REFUSED",
    "9501": "DNS_INFO_NO_RECORDS", "9502": "DNS_ERROR_BAD_PACKET",
    "9560": "DNS_ERROR_INVALID_NAME_CHAR", "9701": "DNS_ERROR_RECORD_DOES_NOT_EXIST",
    "9852": "DNS_ERROR_NO_DNS_SERVERS", "10054": "WSAECONNRESET", "10060": "WSAETIMEDOUT",
}  # fmt: skip
