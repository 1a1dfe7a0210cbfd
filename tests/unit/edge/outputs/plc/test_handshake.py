"""The handshake as a PLC drives it: a result per trigger, never another part's, a buffer that overruns honestly."""

from __future__ import annotations

from edge.outputs.plc.handshake import (
    ERROR,
    NG,
    OK,
    Handshake,
    PlcResult,
    result_from_verdict,
)


class Station:
    """A handshake with a recording trigger and settlement, driven as a PLC scan would."""

    def __init__(self, buffer_size: int = 8, triggers: bool = True, refuse: bool = False) -> None:
        self.fired: list[int] = []
        self.settled: list[str | None] = []
        self.refuse = refuse
        self.hs = Handshake(buffer_size, self.fire if triggers else None, self.settled.append)
        self.plc = {"part_id": 0, "trigger": 0, "ack": 0, "clear_overrun": 0}

    def fire(self, part_id: int) -> str | None:
        if self.refuse:
            return "ValueError: too many triggers"
        self.fired.append(part_id)
        return None

    def write(self, **values: int) -> dict[str, int]:
        self.plc.update(values)
        self.hs.update_inputs(self.plc)
        return self.hs.station_values()

    def read_and_ack(self) -> dict[str, int]:
        """Read the presented result, ack it, drop the ack: one full result handshake."""
        seen = self.hs.station_values()
        assert seen["results_valid"] == 1
        assert self.write(ack=1)["results_valid"] == 0
        self.write(ack=0)
        return seen


def result(seq: int, part: int, code: int = OK) -> PlcResult:
    return PlcResult(code, part_id=part, seq=seq)


def test_trigger_with_part_id_is_taken_once_and_acknowledged_until_the_plc_drops_it() -> None:
    st = Station()
    values = st.write(part_id=4711, trigger=1)
    assert st.fired == [4711] and values["trigger_ack"] == 1 and values["busy"] == 1
    st.write(trigger=1)  # still high: not a second trigger
    assert st.fired == [4711]
    assert st.write(trigger=0)["trigger_ack"] == 0
    st.hs.add_result(result(1, 4711, NG))
    seen = st.read_and_ack()
    assert (seen["part_id_echo"], seen["seq"], seen["result"], seen["busy"]) == (4711, 1, NG, 0)
    assert st.settled == [None]


def test_the_next_result_waits_until_the_ack_is_dropped_so_no_part_is_acked_with_another_result() -> None:
    st = Station()
    st.hs.add_result(result(1, 11))
    st.hs.add_result(result(2, 12))
    assert st.hs.station_values()["part_id_echo"] == 11
    values = st.write(ack=1)
    assert values["results_valid"] == 0  # part 12 is not presented while the ack for 11 is still high
    values = st.write(ack=1)
    assert values["results_valid"] == 0 and st.settled == [None]
    values = st.write(ack=0)
    assert (values["results_valid"], values["part_id_echo"]) == (1, 12)


def test_a_full_buffer_drops_the_oldest_waiting_result_counts_it_and_sets_overrun_until_cleared() -> None:
    st = Station(buffer_size=3)
    for seq in range(1, 8):  # 1 presented, 3 waiting, 3 dropped (2, 3, 4: the oldest waiting ones)
        st.hs.add_result(result(seq, 100 + seq))
    values = st.hs.station_values()
    assert (values["seq"], values["buffer_count"], values["overrun"], values["overrun_count"]) == (1, 3, 1, 3)
    assert st.settled == ["overrun"] * 3
    assert st.write(clear_overrun=1)["overrun"] == 0
    assert st.write(clear_overrun=1)["overrun"] == 0 and st.write(clear_overrun=0)["overrun_count"] == 3
    seqs = [st.read_and_ack()["seq"] for _ in range(4)]
    assert seqs == [1, 5, 6, 7] and st.settled == ["overrun"] * 3 + [None] * 4


def test_without_a_buffer_a_result_arriving_while_one_is_presented_is_dropped_not_swapped_in() -> None:
    st = Station(buffer_size=0)
    st.hs.add_result(result(1, 1))
    st.hs.add_result(result(2, 2))
    assert st.hs.station_values()["seq"] == 1 and st.settled == ["overrun"]


def test_a_refused_trigger_answers_the_part_with_an_error_result_not_silence() -> None:
    st = Station(refuse=True)
    st.write(part_id=9, trigger=1)
    values = st.hs.station_values()
    assert (values["results_valid"], values["result"], values["part_id_echo"], values["seq"]) == (1, ERROR, 9, 0)
    st.read_and_ack()
    assert st.settled == [] and st.hs.refused_triggers == 1  # no verdict behind it: nothing to settle


def test_free_run_ignores_the_trigger_word_and_still_presents_every_result() -> None:
    st = Station(triggers=False)
    assert st.write(part_id=3, trigger=1)["trigger_ack"] == 0 and st.fired == []
    st.hs.add_result(result(1, 0))
    assert st.read_and_ack()["seq"] == 1


def test_an_error_verdict_is_result_3_and_scores_are_scaled_and_clipped() -> None:
    error = result_from_verdict({"seq": 5, "verdict": "NG", "error": "decode: bad", "score": None,
                                 "normalized_score": None, "regions": [], "part_id": 7})
    assert (error.result, error.score_milli, error.part_id) == (ERROR, 0, 7)
    ok = result_from_verdict({"seq": 6, "verdict": "OK", "error": None, "score": 1.2346, "normalized_score": 1.0,
                              "regions": [{}, {}], "part_id": None})
    assert (ok.result, ok.score_milli, ok.normalized_milli, ok.regions, ok.part_id) == (OK, 1235, 1000, 2, 0)
