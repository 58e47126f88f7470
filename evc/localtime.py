"""Local time for pricing on the host: the zone's full IANA history, and the zone of an OCPI CDR.

The device judges time restrictions with one POSIX TZ rule (firmware/billing/tz.py), the rule a
zone follows now. That is wrong for any instant the rule does not cover: a zone's past years
(America/Mexico_City kept DST until 2022) and special periods (Africa/Casablanca every Ramadan).
The host knows the whole history (zoneinfo, from the system's tz database or the tzdata package),
so tools/price.py converts every instant the engine judges to local time here and hands the engine
the UTC offsets of the session (`offsets`). docs/pricing.md, "Local time", has the rules.
"""
from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from collections.abc import Callable, Iterable

from evc.tariff import _UTC_NAMES, _firmware_tz, brief

UTC_NAMES = _UTC_NAMES
_IANA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+)*")
_GRID = 3 * 3600  # offsets are probed at least this often between the instants asked for


class ZoneError(ValueError):
    """Bad or unusable time zone input; the message starts with the field it is about."""


class Zone:
    """A time zone the host evaluates: name, kind ("utc", "iana" or "posix") and offset(t)."""

    def __init__(self, name: str, kind: str, offset: Callable[[int], int]):
        self.name = name
        self.kind = kind
        self.offset = offset  # UTC epoch second -> seconds east of UTC

    def __repr__(self) -> str:
        return f"Zone({self.name!r}, {self.kind})"


def zone(text: object, where: str) -> Zone:
    """An IANA zone name (full history via zoneinfo), a UTC name, or a POSIX TZ rule."""
    if not isinstance(text, str) or not text:
        raise ZoneError(f"{where}: time zone name (a string such as 'Europe/Berlin') expected, got {brief(text)}")
    if text in UTC_NAMES:
        return Zone(text, "utc", lambda t: 0)
    if _IANA_NAME.fullmatch(text) and ".." not in text:
        try:
            z = zoneinfo.ZoneInfo(text)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
            z = None
        if z is not None:
            return Zone(text, "iana", lambda t, z=z: _offset(z, t))
        if "/" in text:
            raise ZoneError(f"{where}: unknown IANA zone {brief(text)}{_no_database()}")
    rule = _posix_rule(text)
    if rule is None:
        raise ZoneError(f"{where}: {brief(text)} is neither a known IANA zone nor a valid POSIX TZ rule"
                        f"{_no_database()}")
    return Zone(text, "posix", rule.offset)


def _offset(z: zoneinfo.ZoneInfo, t: int) -> int:
    off = dt.datetime.fromtimestamp(t, z).utcoffset()
    assert off is not None
    return off // dt.timedelta(seconds=1)


def _no_database() -> str:
    if zoneinfo.available_timezones():
        return ""
    return " (this machine has no IANA time zone database: pip install tzdata)"


def _posix_rule(text: str):
    tz = _firmware_tz()  # the device's own parser, run on CPython
    try:
        return tz.TzRule(text)
    except ValueError:
        return None


def offsets(z: Zone, instants: Iterable[int]) -> list[list[int]]:
    """[[utc_from, seconds_east], ...]: the zone's UTC offsets from the first to the last instant.

    Every instant given is converted exactly (they are what the engine judges); between them the
    offset is probed at least every 3 hours and each change is found to the second."""
    pts = sorted(set(instants))
    if not pts:
        return [[0, 0]]
    lo, hi = pts[0], pts[-1]
    step = max(_GRID, (hi - lo) // 200000 + 1)
    probes = sorted(set(pts) | set(range(lo, hi, step)))
    table = [[lo, z.offset(lo)]]
    prev = lo
    for t in probes[1:]:
        off = z.offset(t)
        while off != table[-1][1]:
            # offset(prev) is the table's last and offset(t) differs: bisect to a change, to the second
            a, b = prev, t
            while b - a > 1:
                mid = (a + b) // 2
                if z.offset(mid) == table[-1][1]:
                    a = mid
                else:
                    b = mid
            table.append([b, z.offset(b)])
            prev = b  # more than one change between two probes: go on from this one
        prev = t
    return table


def country_zone(country: object, instants: list[int], where: str) -> Zone:
    """The zone of an ISO 3166-1 alpha-3 country, when its zones keep one time at these instants."""
    if not isinstance(country, str) or not re.fullmatch(r"[A-Z]{3}", country):
        raise ZoneError(f"{where}: ISO 3166-1 alpha-3 country code expected, got {brief(country)}; "
                        "or give the zone with --tz")
    names = COUNTRY_ZONES.get(country)
    if names is None:
        raise ZoneError(f"{where}: no time zone is known for country {country}; give the zone with --tz")
    zones = [zone(n, where) for n in names.split()]
    first = zones[0]
    for z in zones[1:]:
        if any(z.offset(t) != first.offset(t) for t in instants):
            shown = ", ".join(names.split()[:3]) + (", ..." if len(zones) > 3 else "")
            raise ZoneError(f"{where}: {country} has {len(zones)} time zones ({shown}) whose clocks differ "
                            "during this session; give the location's zone with --tz")
    return first


# ISO 3166-1 alpha-3 country -> the tz database zones of that country, space-separated: the zones
# zone.tab lists for its alpha-2 code (areas whose clocks have agreed since 1970). The first is the
# one priced in when they all keep one time at the instants priced: zone.tab's first, or where we
# chose, the capital's (UKR, UZB, RUS, AUS, BRA, CAN). Checked against the machine's zone.tab and
# ISO 3166 list by host_tests/pricing/test_price_cli.py. BVT and HMD have no zone: refused.
COUNTRY_ZONES_TZDATA = "2025b"  # the tz database release the table was taken from
COUNTRY_ZONES = {
    # one zone
    "ABW": "America/Aruba", "AFG": "Asia/Kabul", "AGO": "Africa/Luanda", "AIA": "America/Anguilla",
    "ALA": "Europe/Mariehamn", "ALB": "Europe/Tirane", "AND": "Europe/Andorra", "ARE": "Asia/Dubai",
    "ARM": "Asia/Yerevan", "ASM": "Pacific/Pago_Pago", "ATF": "Indian/Kerguelen", "ATG": "America/Antigua",
    "AUT": "Europe/Vienna", "AZE": "Asia/Baku", "BDI": "Africa/Bujumbura", "BEL": "Europe/Brussels",
    "BEN": "Africa/Porto-Novo", "BES": "America/Kralendijk", "BFA": "Africa/Ouagadougou", "BGD": "Asia/Dhaka",
    "BGR": "Europe/Sofia", "BHR": "Asia/Bahrain", "BHS": "America/Nassau", "BIH": "Europe/Sarajevo",
    "BLM": "America/St_Barthelemy", "BLR": "Europe/Minsk", "BLZ": "America/Belize", "BMU": "Atlantic/Bermuda",
    "BOL": "America/La_Paz", "BRB": "America/Barbados", "BRN": "Asia/Brunei", "BTN": "Asia/Thimphu",
    "BWA": "Africa/Gaborone", "CAF": "Africa/Bangui", "CCK": "Indian/Cocos", "CHE": "Europe/Zurich",
    "CIV": "Africa/Abidjan", "CMR": "Africa/Douala", "COG": "Africa/Brazzaville", "COK": "Pacific/Rarotonga",
    "COL": "America/Bogota", "COM": "Indian/Comoro", "CPV": "Atlantic/Cape_Verde", "CRI": "America/Costa_Rica",
    "CUB": "America/Havana", "CUW": "America/Curacao", "CXR": "Indian/Christmas", "CYM": "America/Cayman",
    "CZE": "Europe/Prague", "DJI": "Africa/Djibouti", "DMA": "America/Dominica", "DNK": "Europe/Copenhagen",
    "DOM": "America/Santo_Domingo", "DZA": "Africa/Algiers", "EGY": "Africa/Cairo", "ERI": "Africa/Asmara",
    "ESH": "Africa/El_Aaiun", "EST": "Europe/Tallinn", "ETH": "Africa/Addis_Ababa", "FIN": "Europe/Helsinki",
    "FJI": "Pacific/Fiji", "FLK": "Atlantic/Stanley", "FRA": "Europe/Paris", "FRO": "Atlantic/Faroe",
    "GAB": "Africa/Libreville", "GBR": "Europe/London", "GEO": "Asia/Tbilisi", "GGY": "Europe/Guernsey",
    "GHA": "Africa/Accra", "GIB": "Europe/Gibraltar", "GIN": "Africa/Conakry", "GLP": "America/Guadeloupe",
    "GMB": "Africa/Banjul", "GNB": "Africa/Bissau", "GNQ": "Africa/Malabo", "GRC": "Europe/Athens",
    "GRD": "America/Grenada", "GTM": "America/Guatemala", "GUF": "America/Cayenne", "GUM": "Pacific/Guam",
    "GUY": "America/Guyana", "HKG": "Asia/Hong_Kong", "HND": "America/Tegucigalpa", "HRV": "Europe/Zagreb",
    "HTI": "America/Port-au-Prince", "HUN": "Europe/Budapest", "IMN": "Europe/Isle_of_Man", "IND": "Asia/Kolkata",
    "IOT": "Indian/Chagos", "IRL": "Europe/Dublin", "IRN": "Asia/Tehran", "IRQ": "Asia/Baghdad",
    "ISL": "Atlantic/Reykjavik", "ISR": "Asia/Jerusalem", "ITA": "Europe/Rome", "JAM": "America/Jamaica",
    "JEY": "Europe/Jersey", "JOR": "Asia/Amman", "JPN": "Asia/Tokyo", "KEN": "Africa/Nairobi", "KGZ": "Asia/Bishkek",
    "KHM": "Asia/Phnom_Penh", "KNA": "America/St_Kitts", "KOR": "Asia/Seoul", "KWT": "Asia/Kuwait",
    "LAO": "Asia/Vientiane", "LBN": "Asia/Beirut", "LBR": "Africa/Monrovia", "LBY": "Africa/Tripoli",
    "LCA": "America/St_Lucia", "LIE": "Europe/Vaduz", "LKA": "Asia/Colombo", "LSO": "Africa/Maseru",
    "LTU": "Europe/Vilnius", "LUX": "Europe/Luxembourg", "LVA": "Europe/Riga", "MAC": "Asia/Macau",
    "MAF": "America/Marigot", "MAR": "Africa/Casablanca", "MCO": "Europe/Monaco", "MDA": "Europe/Chisinau",
    "MDG": "Indian/Antananarivo", "MDV": "Indian/Maldives", "MKD": "Europe/Skopje", "MLI": "Africa/Bamako",
    "MLT": "Europe/Malta", "MMR": "Asia/Yangon", "MNE": "Europe/Podgorica", "MNP": "Pacific/Saipan",
    "MOZ": "Africa/Maputo", "MRT": "Africa/Nouakchott", "MSR": "America/Montserrat", "MTQ": "America/Martinique",
    "MUS": "Indian/Mauritius", "MWI": "Africa/Blantyre", "MYT": "Indian/Mayotte", "NAM": "Africa/Windhoek",
    "NCL": "Pacific/Noumea", "NER": "Africa/Niamey", "NFK": "Pacific/Norfolk", "NGA": "Africa/Lagos",
    "NIC": "America/Managua", "NIU": "Pacific/Niue", "NLD": "Europe/Amsterdam", "NOR": "Europe/Oslo",
    "NPL": "Asia/Kathmandu", "NRU": "Pacific/Nauru", "OMN": "Asia/Muscat", "PAK": "Asia/Karachi",
    "PAN": "America/Panama", "PCN": "Pacific/Pitcairn", "PER": "America/Lima", "PHL": "Asia/Manila",
    "PLW": "Pacific/Palau", "POL": "Europe/Warsaw", "PRI": "America/Puerto_Rico", "PRK": "Asia/Pyongyang",
    "PRY": "America/Asuncion", "QAT": "Asia/Qatar", "REU": "Indian/Reunion", "ROU": "Europe/Bucharest",
    "RWA": "Africa/Kigali", "SAU": "Asia/Riyadh", "SDN": "Africa/Khartoum", "SEN": "Africa/Dakar",
    "SGP": "Asia/Singapore", "SGS": "Atlantic/South_Georgia", "SHN": "Atlantic/St_Helena",
    "SJM": "Arctic/Longyearbyen", "SLB": "Pacific/Guadalcanal", "SLE": "Africa/Freetown",
    "SLV": "America/El_Salvador", "SMR": "Europe/San_Marino", "SOM": "Africa/Mogadishu", "SPM": "America/Miquelon",
    "SRB": "Europe/Belgrade", "SSD": "Africa/Juba", "STP": "Africa/Sao_Tome", "SUR": "America/Paramaribo",
    "SVK": "Europe/Bratislava", "SVN": "Europe/Ljubljana", "SWE": "Europe/Stockholm", "SWZ": "Africa/Mbabane",
    "SXM": "America/Lower_Princes", "SYC": "Indian/Mahe", "SYR": "Asia/Damascus", "TCA": "America/Grand_Turk",
    "TCD": "Africa/Ndjamena", "TGO": "Africa/Lome", "THA": "Asia/Bangkok", "TJK": "Asia/Dushanbe",
    "TKL": "Pacific/Fakaofo", "TKM": "Asia/Ashgabat", "TLS": "Asia/Dili", "TON": "Pacific/Tongatapu",
    "TTO": "America/Port_of_Spain", "TUN": "Africa/Tunis", "TUR": "Europe/Istanbul", "TUV": "Pacific/Funafuti",
    "TWN": "Asia/Taipei", "TZA": "Africa/Dar_es_Salaam", "UGA": "Africa/Kampala", "URY": "America/Montevideo",
    "VAT": "Europe/Vatican", "VCT": "America/St_Vincent", "VEN": "America/Caracas", "VGB": "America/Tortola",
    "VIR": "America/St_Thomas", "VNM": "Asia/Ho_Chi_Minh", "VUT": "Pacific/Efate", "WLF": "Pacific/Wallis",
    "WSM": "Pacific/Apia", "YEM": "Asia/Aden", "ZAF": "Africa/Johannesburg", "ZMB": "Africa/Lusaka",
    "ZWE": "Africa/Harare",
    # several zones: the first is the one priced in when all agree during the session
    "ARG": ("America/Argentina/Buenos_Aires America/Argentina/Cordoba America/Argentina/Salta "
            "America/Argentina/Jujuy America/Argentina/Tucuman America/Argentina/Catamarca "
            "America/Argentina/La_Rioja America/Argentina/San_Juan America/Argentina/Mendoza "
            "America/Argentina/San_Luis America/Argentina/Rio_Gallegos America/Argentina/Ushuaia"),
    "ATA": ("Antarctica/McMurdo Antarctica/Casey Antarctica/Davis Antarctica/DumontDUrville Antarctica/Mawson "
            "Antarctica/Palmer Antarctica/Rothera Antarctica/Syowa Antarctica/Troll Antarctica/Vostok"),
    "AUS": ("Australia/Sydney Australia/Lord_Howe Antarctica/Macquarie Australia/Hobart Australia/Melbourne "
            "Australia/Broken_Hill Australia/Brisbane Australia/Lindeman Australia/Adelaide Australia/Darwin "
            "Australia/Perth Australia/Eucla"),
    "BRA": ("America/Sao_Paulo America/Noronha America/Belem America/Fortaleza America/Recife America/Araguaina "
            "America/Maceio America/Bahia America/Campo_Grande America/Cuiaba America/Santarem "
            "America/Porto_Velho America/Boa_Vista America/Manaus America/Eirunepe America/Rio_Branco"),
    "CAN": ("America/Toronto America/St_Johns America/Halifax America/Glace_Bay America/Moncton America/Goose_Bay "
            "America/Blanc-Sablon America/Iqaluit America/Atikokan America/Winnipeg "
            "America/Resolute America/Rankin_Inlet America/Regina America/Swift_Current America/Edmonton "
            "America/Cambridge_Bay America/Inuvik America/Creston America/Dawson_Creek America/Fort_Nelson "
            "America/Whitehorse America/Dawson America/Vancouver"),
    "CHL": "America/Santiago America/Coyhaique America/Punta_Arenas Pacific/Easter",
    "CHN": "Asia/Shanghai Asia/Urumqi",
    "COD": "Africa/Kinshasa Africa/Lubumbashi",
    "CYP": "Asia/Nicosia Asia/Famagusta",
    "DEU": "Europe/Berlin Europe/Busingen",
    "ECU": "America/Guayaquil Pacific/Galapagos",
    "ESP": "Europe/Madrid Africa/Ceuta Atlantic/Canary",
    "FSM": "Pacific/Chuuk Pacific/Pohnpei Pacific/Kosrae",
    "GRL": "America/Nuuk America/Danmarkshavn America/Scoresbysund America/Thule",
    "IDN": "Asia/Jakarta Asia/Pontianak Asia/Makassar Asia/Jayapura",
    "KAZ": "Asia/Almaty Asia/Qyzylorda Asia/Qostanay Asia/Aqtobe Asia/Aqtau Asia/Atyrau Asia/Oral",
    "KIR": "Pacific/Tarawa Pacific/Kanton Pacific/Kiritimati",
    "MEX": ("America/Mexico_City America/Cancun America/Merida America/Monterrey America/Matamoros "
            "America/Chihuahua America/Ciudad_Juarez America/Ojinaga America/Mazatlan America/Bahia_Banderas "
            "America/Hermosillo America/Tijuana"),
    "MHL": "Pacific/Majuro Pacific/Kwajalein",
    "MNG": "Asia/Ulaanbaatar Asia/Hovd",
    "MYS": "Asia/Kuala_Lumpur Asia/Kuching",
    "NZL": "Pacific/Auckland Pacific/Chatham",
    "PNG": "Pacific/Port_Moresby Pacific/Bougainville",
    "PRT": "Europe/Lisbon Atlantic/Madeira Atlantic/Azores",
    "PSE": "Asia/Gaza Asia/Hebron",
    "PYF": "Pacific/Tahiti Pacific/Marquesas Pacific/Gambier",
    "RUS": ("Europe/Moscow Europe/Kaliningrad Europe/Kirov Europe/Volgograd Europe/Astrakhan Europe/Saratov "
            "Europe/Ulyanovsk Europe/Samara Asia/Yekaterinburg Asia/Omsk Asia/Novosibirsk Asia/Barnaul Asia/Tomsk "
            "Asia/Novokuznetsk Asia/Krasnoyarsk Asia/Irkutsk Asia/Chita Asia/Yakutsk Asia/Khandyga "
            "Asia/Vladivostok Asia/Ust-Nera Asia/Magadan Asia/Sakhalin Asia/Srednekolymsk Asia/Kamchatka "
            "Asia/Anadyr"),
    "UKR": "Europe/Kyiv Europe/Simferopol",
    "UMI": "Pacific/Midway Pacific/Wake",
    "USA": ("America/New_York America/Detroit America/Kentucky/Louisville America/Kentucky/Monticello "
            "America/Indiana/Indianapolis America/Indiana/Vincennes America/Indiana/Winamac "
            "America/Indiana/Marengo America/Indiana/Petersburg America/Indiana/Vevay America/Chicago "
            "America/Indiana/Tell_City America/Indiana/Knox America/Menominee America/North_Dakota/Center "
            "America/North_Dakota/New_Salem America/North_Dakota/Beulah America/Denver America/Boise "
            "America/Phoenix America/Los_Angeles America/Anchorage America/Juneau America/Sitka "
            "America/Metlakatla America/Yakutat America/Nome America/Adak Pacific/Honolulu"),
    "UZB": "Asia/Tashkent Asia/Samarkand",
}
