"""Regenerates the sample PDFs in data/ from the text kept below.

    python tests/build_samples.py

(It lives beside the tests, not in data/, so that indexing data/ indexes documents only.)

The companies, places and people are fictional. Every fact sits in one plain sentence so an
extractive reader can quote it; the tests and the README demo ask questions about them.
"""

from __future__ import annotations

import sys
from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parent
DATA_DIR = TESTS_DIR.parent / "data"
sys.path.insert(0, str(TESTS_DIR))

from pdf_factory import write_text_pdf  # noqa: E402

AURORA_HANDBOOK_PAGES = [
    """Aurora Bicycle Works Employee Handbook

Part One: Our History

Aurora Bicycle Works was founded in 1984 in Bergen, Norway, by Ingrid Solberg. She started the company in a \
converted boathouse near the harbour with two second-hand lathes and a loan from her uncle. In its first year \
the workshop built 240 bicycles, most of them sold to postal carriers in western Norway.

The company headquarters moved to Trondheim in 2003. The move brought the design office closer to the \
university, and several of our engineers still teach courses there. A second assembly plant opened in Hamar in \
2011 to build frames for the export market.

Henrik Dahl has been the chief executive officer since 2019. Ingrid Solberg remains chair of the board and \
visits every workshop at least once a year. Today Aurora Bicycle Works employs 412 people and sells bicycles in \
eighteen countries.

Our motto, written above the door of the first boathouse, is "Built for the long road." Every new employee \
receives a brass bell engraved with these words on the first day of work.""",
    """Part Two: Benefits and Workplace Policies

Full-time employees get 27 vacation days a year. Vacation requests should be sent to your team lead at least \
four weeks in advance, and up to five unused days can be carried over to the next year.

Every employee receives a cycling allowance of 4,000 kroner a year for the upkeep of their own bicycle. The \
company workshop in Trondheim is open to staff on Friday afternoons for free repairs.

Core working hours are from 9:00 to 15:00. Outside the core hours, employees choose when to work, provided that \
the team can still cover customer calls.

The safety officer is Magnus Eide. Every accident or near miss in a workshop must be reported to the safety \
officer within 24 hours. Protective glasses are required at every lathe and grinding station, and hearing \
protection is required in the frame welding hall.

The annual staff ride takes place in June on the Rallarvegen route. Employees who take part receive one extra \
day off in the same month.""",
    """Part Three: Our Products

The flagship model is the Nordlys touring bike. The Nordlys has a hand-brazed steel frame and a 14-speed \
Rohloff hub gear, and it weighs 13.8 kilograms without luggage. The Nordlys costs 28,500 kroner in Norway.

The Fjellvind is our electric commuter bike. Its battery gives a range of 120 kilometres on a single charge, \
and it fully recharges in four and a half hours. The Fjellvind was named Commuter Bike of the Year by a Swedish \
cycling magazine in 2022.

For children we build the Lille Ulv, a light aluminium bike with 20-inch wheels. The Lille Ulv comes in five \
colours, and its saddle and handlebars grow with the rider.

Every Aurora frame carries a lifetime warranty. Components such as gears, brakes and lights are covered for \
five years. Customers who want to register a warranty claim should contact the service desk in Trondheim.""",
]

LIGHTHOUSE_REPORT_PAGES = [
    """Skarv Point Lighthouse: Maintenance Report 2025

Section 1: The Station

Skarv Point Lighthouse was built in 1872 to guard the approach to Gullhaven harbour. The tower is 28 metres \
tall and was designed by the engineer Eliza Marrow. It is built of local granite and painted white with a \
single red band below the gallery.

The light has a range of 19 nautical miles. Its characteristic is two white flashes every 15 seconds, which \
distinguishes it from the neighbouring light on Ravn Island.

The station was automated in 1994, when the last resident keeper, Arthur Penhale, retired after thirty-one \
years of service. The keeper's cottage now houses a small museum that is open to visitors from May to \
September.

The original rotating lens was replaced with an LED lantern in 2021 by Tidewater Optics. The LED lantern uses \
about one tenth of the power of the old lamp and needs far less routine maintenance.""",
    """Section 2: Work Carried Out in 2025

The annual inspection took place on 14 April 2025 and was led by the surveyor Rosalind Achebe. The inspection \
found corrosion and hairline cracks in the railing of the lantern gallery.

Twelve metres of gallery railing were replaced with stainless steel during the summer. The exterior of the \
tower was repainted in August, which used 340 litres of paint.

A solar array with a peak output of 4.2 kilowatts was installed on the roof of the cottage. The backup battery \
can keep the light running for 72 hours without sunshine or mains power.

The total cost of the 2025 maintenance work was 186,000 pounds. The work was funded by the Gullhaven Harbour \
Trust.

The next full inspection is scheduled for March 2027.""",
]


def build_samples(data_dir: Path = DATA_DIR) -> list[Path]:
    return [
        write_text_pdf(data_dir / "aurora_bicycle_works_handbook.pdf", AURORA_HANDBOOK_PAGES),
        write_text_pdf(data_dir / "harbor_lighthouse_report.pdf", LIGHTHOUSE_REPORT_PAGES),
    ]


if __name__ == "__main__":
    for written in build_samples():
        print(f"wrote {written}")
