"""tegrastats parsing on real captures from a TX2, a Nano and an AGX Orin (tests/fixtures/device/SOURCES.md), and
the sampler against a fake `tegrastats` executable that replays those captures."""

import os
import stat
import time
from pathlib import Path

import pytest

from jetson.tegrastats import Sampler, parse_file, parse_line, parse_lines, summarize, total_power_mw

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "device"
TX2 = FIXTURES / "tegrastats_tx2_l4t-r32-style_vddsys-rails_sudo.log"
NANO = FIXTURES / "tegrastats_jetson-nano-4gb_jp4-r32_pom5v.log"
ORIN = FIXTURES / "tegrastats_orin-agx-64gb_jp6-r36_timestamped.log"


def test_tx2_rails_without_units_and_the_sudo_lines_skipped():
    samples, skipped = parse_file(TX2)
    assert len(samples) == 2 and skipped == 2  # the shell prompt and `[sudo] password for nvidia:`
    first, second = samples
    assert first.rails["VDD_IN"] == (3566, 3566) and second.rails["VDD_IN"] == (3445, 3505)
    assert set(first.rails) == {"VDD_SYS_GPU", "VDD_SYS_SOC", "VDD_4V0_WIFI", "VDD_IN", "VDD_SYS_CPU", "VDD_SYS_DDR"}
    assert first.ram_used_mb == 284 and first.ram_total_mb == 7860 and first.swap_total_mb is None
    assert first.cpu_load == [48, None, None, 53, 43, 41]  # the two Denver cores are off
    assert first.cpu_freq_mhz == [2034, None, None, 2034, 2033, 2034]
    assert first.gpu_load is None and first.gpu_freq_mhz == 0  # `GR3D_FREQ @0`: a frequency, no load
    assert (first.emc_load, first.emc_freq_mhz) == (2, 1600)
    assert first.temps == {"PLL": 29.5, "MCPU": 29.5, "PMIC": 100.0, "Tboard": 26.0, "GPU": 27.5, "BCPU": 29.5,
                           "thermal": 28.7, "Tdiode": 25.0}
    assert first.timestamp is None
    s = summarize(samples, skipped)
    assert s["total_power_mw"] == pytest.approx((3566 + 3445) / 2) and s["total_power_rails"] == ["VDD_IN"]
    assert s["total_power_method"] == "input rail" and s["skipped_lines"] == 2
    assert s["gpu_load_mean_pct"] is None and s["max_temp_c"]["GPU"] == 27.5


def test_nano_pom_rails_swap_iram_and_gpu_load():
    samples, skipped = parse_file(NANO)
    assert len(samples) == 114 and skipped == 0
    first, third = samples[0], samples[2]
    assert first.rails == {"POM_5V_IN": (920, 920), "POM_5V_GPU": (0, 0), "POM_5V_CPU": (119, 119)}
    assert (first.swap_used_mb, first.swap_total_mb) == (0, 4096) and first.ram_total_mb == 3964
    assert (first.emc_load, first.emc_freq_mhz, first.gpu_load, first.gpu_freq_mhz) == (0, 204, 0, 76)
    assert third.gpu_load == 42 and third.rails["POM_5V_IN"] == (2793, 1750)
    assert first.temps["CPU"] == 27.5 and first.temps["AO"] == 29.5
    assert first.cpu_load == [10, 3, 0, 0] and first.cpu_freq_mhz == [102] * 4
    s = summarize(samples)
    assert s["total_power_rails"] == ["POM_5V_IN"]
    assert s["total_power_mw"] == pytest.approx(sum(x.rails["POM_5V_IN"][0] for x in samples) / 114)
    assert s["gpu_load_max_pct"] == max(x.gpu_load for x in samples)
    assert max(x.gpu_freq_mhz for x in samples) == 921  # the GPU clocks up under load


def test_orin_timestamp_mw_units_lowercase_temps_and_gpc_frequencies():
    samples, skipped = parse_file(ORIN)
    assert len(samples) == 43 and skipped == 0
    first = samples[0]
    assert first.timestamp == "2025-08-14T15:00:57"
    assert first.rails == {"VDD_GPU_SOC": (2797, 2797), "VDD_CPU_CV": (799, 799), "VIN_SYS_5V0": (3215, 3215)}
    assert first.temps == {"cpu": 51.031, "soc2": 48.0, "soc0": 48.562, "gpu": 47.875, "tj": 51.031,
                           "soc1": 48.062}
    assert (first.gpu_load, first.gpu_freq_mhz) == (43, 305)  # GR3D_FREQ 43%@[305,0]
    assert len(first.cpu_load) == 12 and first.cpu_load[8:] == [None] * 4
    assert (first.ram_used_mb, first.ram_total_mb, first.swap_total_mb) == (12574, 62841, 31420)
    assert samples[-1].rails["VIN_SYS_5V0"] == (2612, 3072)
    assert total_power_mw(first) == (2797 + 799 + 3215, ("VDD_CPU_CV", "VDD_GPU_SOC", "VIN_SYS_5V0"))
    s = summarize(samples)
    assert s["total_power_rails"] == ["VDD_CPU_CV", "VDD_GPU_SOC", "VIN_SYS_5V0"]
    assert "sum of rails" in s["total_power_method"]
    assert s["total_power_mw"] == pytest.approx(sum(s["power_mw"].values()))


def _strip(line, *fields):
    """A capture as tegrastats prints it without root: EMC_FREQ and GR3D_FREQ left out."""
    words = line.split()
    for name in fields:
        i = words.index(name)
        del words[i:i + 2]
    return " ".join(words)


@pytest.mark.parametrize("path", [NANO, ORIN, TX2])
def test_non_root_lines_have_no_gpu_or_emc_but_keep_the_rest(path):
    line = next(x for x in path.read_text().splitlines() if "RAM " in x)
    full, partial = parse_line(line), parse_line(_strip(line, "EMC_FREQ", "GR3D_FREQ"))
    assert partial.gpu_load is None and partial.gpu_freq_mhz is None and partial.emc_load is None
    assert partial.rails == full.rails and partial.temps == full.temps and partial.cpu_load == full.cpu_load


def test_jetpack5_input_rail_with_units_and_a_sensor_without_reading():
    # The Orin NX / Orin Nano layout of JetPack 5 (written here from the fields above: VDD_IN with mW units).
    s = parse_line("RAM 2862/7620MB (lfb 1xx4MB) SWAP 0/3810MB (cached 0MB) CPU [1%@729,off,off,off,2%@729,0%@729] "
                   "EMC_FREQ 0%@2133 GR3D_FREQ 0%@[305] VIC_FREQ 115 APE 200 CV0@-256C CPU@47.5C "
                   "Tboard@36C SOC2@44.4C GPU@45.1C VDD_IN 4937mW/4937mW VDD_CPU_GPU_CV 475mW/475mW "
                   "VDD_SOC 1424mW/1424mW")
    assert s.rails["VDD_IN"] == (4937, 4937) and "CV0" not in s.temps and s.temps["CPU"] == 47.5
    assert total_power_mw(s) == (4937, ("VDD_IN",))


@pytest.mark.parametrize("line", [
    "", "nvidia@linux:~$ sudo /usr/bin/tegrastats", "[sudo] password for nvidia:", "RAM is cheap",
    "tegrastats: command not found", "Error: failed to open /sys/kernel/debug/...",
    "08-14-2025 15:00:57 RAM 12574/62841MB (lfb 258x4MB) SWAP 0/31420MB (cached 0MB) CPU [2%@1036,0%@806",
])
def test_lines_that_are_not_tegrastats_are_skipped_never_read_as_numbers(line):
    assert parse_line(line) is None
    samples, skipped = parse_lines([line, ""])
    assert samples == [] and skipped == (1 if line.strip() else 0)


def test_an_empty_window_summarizes_to_nothing():
    s = summarize([])
    assert s["samples"] == 0 and s["total_power_mw"] is None and s["gpu_load_max_pct"] is None
    assert s["power_mw"] == {} and s["max_temp_c"] == {}


def fake_tegrastats(folder, capture, interval_s=0.02):
    """An executable that replays `capture` line by line forever, as tegrastats prints until it is stopped."""
    path = folder / "tegrastats"
    path.write_text(
        "#!/bin/sh\n"
        "echo \"$$ $*\" > \"{args}\"\n"
        "while true; do\n"
        "  while IFS= read -r line; do printf '%s\\n' \"$line\"; sleep {sleep}; done < \"{capture}\"\n"
        "done\n".format(args=folder / "args.txt", sleep=interval_s, capture=capture))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_sampler_reads_a_running_tegrastats_and_stops_it(tmp_path):
    exe = fake_tegrastats(tmp_path, TX2)
    with Sampler(str(exe), interval_ms=20) as sampler:
        time.sleep(0.6)
    assert sampler.available and sampler.reason is None
    pid, args = (tmp_path / "args.txt").read_text().split(" ", 1)
    assert args.split() == ["--interval", "20"]
    with pytest.raises(OSError):  # stopped with the block
        os.kill(int(pid), 0)
    s = sampler.summary()
    assert s["samples"] >= 4 and s["skipped_lines"] >= 2 and s["last_unparsed_line"]
    assert s["total_power_rails"] == ["VDD_IN"] and 3445 <= s["total_power_mw"] <= 3566
    assert s["max_temp_c"]["PMIC"] == 100.0 and s["available"] is True and s["interval_ms"] == 20


def test_sampler_summary_covers_only_the_window_asked_for(tmp_path):
    with Sampler(str(fake_tegrastats(tmp_path, ORIN)), interval_ms=20) as sampler:
        time.sleep(0.3)
        middle = time.monotonic()
        time.sleep(0.3)
    before, after = sampler.summary(end=middle)["samples"], sampler.summary(start=middle)["samples"]
    assert before > 0 and after > 0 and before + after == sampler.summary()["samples"]
    assert sampler.summary(start=time.monotonic())["samples"] == 0


def test_sampler_without_tegrastats_is_unavailable_not_an_error(tmp_path):
    with Sampler(str(tmp_path / "absent" / "tegrastats")) as sampler:
        pass
    s = sampler.summary()
    assert s["available"] is False and "not found" in s["reason"] and s["samples"] == 0
    assert s["total_power_mw"] is None


def test_sampler_counts_the_output_of_a_tegrastats_that_fails(tmp_path):
    exe = tmp_path / "tegrastats"
    exe.write_text("#!/bin/sh\necho 'tegrastats: permission denied' >&2\nexit 1\n")
    exe.chmod(0o755)
    with Sampler(str(exe), interval_ms=20) as sampler:
        time.sleep(0.3)
    s = sampler.summary()
    assert s["samples"] == 0 and s["skipped_lines"] == 1 and "permission denied" in s["last_unparsed_line"]
