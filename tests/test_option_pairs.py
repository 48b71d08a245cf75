"""Every pair of options on every command is honoured or refused: never accepted and ignored.

Issue 18's rule, table-driven. For each command the table below gives every
option an aspect (what it acts on) and the test that shows it doing its job.
Then every pair of options is run through the real parser and command, in
this process, up to the moment it would touch the network (socket creation
and thread starts are stopped there), and its outcome must be the table's:

- refused: exit 2 and one line, `socktool: error: ...`, naming the option(s);
  a pair is refused when the table says so, or when an option that needs
  another (NEEDS) comes without it;
- honoured: it reaches the engine. Two options of different aspects act on
  different things and compose: each one's own test shows it. Two options
  of the same aspect, or a pair known to interact, must be listed in PAIRS
  with the test that runs them together (or as refused).

There is no third outcome: every option names a test that exists, and no
pair is left without a claim.

A new option makes this test fail until it is in the table, with its test.
"""

from __future__ import annotations

import ast
import itertools
from pathlib import Path
from typing import NamedTuple

import pytest
import typer

from conftest import _reached, run_here
from socktool.cli.app import COMMANDS, build_app

TESTS = Path(__file__).parent
REFUSED = "refused"

# -- the table: option -> (aspect, the test that shows it) ---------------------------------------
PIPE = "test_tcp_pipe.py::"
ERRORS = "test_tcp_errors.py::"
VIEW = "test_view_tty.py::"
MANY = "test_tcp_listen_many.py::"
UDP = "test_udp.py::"
ECHO = "test_echo.py::"
TIME = "test_time_server.py::"
SCAN = "test_portscan.py::"
WAIT = "test_wait.py::"
CHECKS = "test_wait_checks.py::"
PROBES = "test_portscan_probes.py::"
PING = "test_ping.py::"
KEEP = "test_keep_open.py::"
ENGINE = "test_engine.py::"
FWD = "test_forward.py::"
BRIDGE_FAULTS = "test_forward_bridge_faults.py::"
FWD_UDP = "test_forward_udp.py::"
FWD_TLS = "test_forward_tls.py::"
FWD_PROXY = "test_forward_proxy.py::"
_BRIDGES = ("--udp", "--udp-to-tcp", "--tcp-to-udp")  # forward's datagram modes
_WHO = "test_allow_deny_and_max_clients_decide_who_gets_a_session_in_every_mode"
_JITTER = "test_forward_units.py::test_delay_and_jitter_keep_the_bytes_and_their_order_and_are_never_early"
TLS = "test_tls.py::"
PROXY = "test_proxy.py::"
CONSOLE = "test_console_tty.py::"
COMMON = "test_common_options.py::"
BEHAVIOUR = "test_option_behaviour.py::"
HALF = "test_half_close.py::"


def _common(name: str) -> dict[str, tuple[str, str]]:
    """-v, -q, --no-color, --debug: shown on every command by tests/test_common_options.py."""
    verbose = {
        "wait": f"{COMMON}test_verbose_wait_says_why_each_attempt_failed",
        "ping": f"{COMMON}test_verbose_ping_states_its_plan_on_stderr",
    }.get(name, f"{COMMON}test_verbose_adds_status_lines_in_a_pipe[{name}]")
    return {
        "-v": ("verbosity", verbose),
        "-q": ("verbosity", f"{COMMON}test_quiet_leaves_stderr_to_the_error_line[{name}]"),
        "--no-color": ("color", f"{COMMON}test_no_color_on_a_terminal_leaves_no_escape_sequences[{name}]"),
        "--debug": ("debug", f"{COMMON}test_debug_adds_a_traceback_to_the_error[{name}]"),
        "-4": ("family", f"{BEHAVIOUR}test_family_flags_refuse_an_address_of_the_other_family[{name}]"),
        "-6": ("family", f"{BEHAVIOUR}test_family_flags_refuse_an_address_of_the_other_family[{name}]"),
    }


_RELAY = {
    "--send": ("payload", f"{PIPE}test_send_repeat_interval_crlf_and_hex_input"),
    "--hex-input": ("payload", f"{PIPE}test_send_repeat_interval_crlf_and_hex_input"),
    "--crlf": ("payload", f"{PIPE}test_send_repeat_interval_crlf_and_hex_input"),
    "--repeat": ("payload", f"{PIPE}test_send_repeat_interval_crlf_and_hex_input"),
    "--interval": ("payload", f"{PIPE}test_send_repeat_interval_crlf_and_hex_input"),
    "--no-shutdown": ("direction", f"{PIPE}test_no_shutdown_keeps_write_side_open"),
    "--keep-sending": ("peer's end", f"{HALF}test_keep_sending_delivers_stdin_after_the_peers_eof"),
    "--quit-after": ("stdin's end", f"{HALF}test_quit_after_ends_that_long_after_stdin_even_if_the_peer_stays"),
    "--send-only": ("direction", f"{PIPE}test_send_only_to_a_slow_reader_loses_nothing"),
    "--recv-only": ("direction", f"{BEHAVIOUR}test_recv_only_sends_nothing_of_stdin"),
    "--expect": ("ending", f"{PIPE}test_expect_exits_0_on_match_and_1_when_peer_closes_without_one"),
    "-i": ("ending", f"{PIPE}test_idle_timeout_closes_a_quiet_connection"),
    "--keepalive": ("keepalive", f"{BEHAVIOUR}test_socket_options_reach_the_connection[--keepalive]"),
    "--nodelay": ("nodelay", f"{BEHAVIOUR}test_socket_options_reach_the_connection[--nodelay]"),
    "--hex": ("format", f"{VIEW}test_view_hex_dump"),
    "--full": ("format", "test_view_behaviour.py::test_full_draws_every_chunk_whole"),
    "--json": ("format", f"{PIPE}test_json_events"),
    "--view": ("format", f"{VIEW}test_pipe_gets_raw_bytes_but_view_flag_forces_the_view"),
    "--raw": ("format", f"{VIEW}test_raw_flag_on_a_terminal_writes_payload_untouched"),
}

_TLS_CONNECT = {
    "--tls": ("tls", f"{TLS}test_client_verifies_a_server_signed_by_the_given_ca_and_relays_its_reply"),
    "--ca": ("tls", f"{TLS}test_client_verifies_a_server_signed_by_the_given_ca_and_relays_its_reply"),
    "--pin": ("tls", f"{TLS}test_pin_accepts_exactly_that_certificate_and_names_the_one_seen_otherwise"),
    "--insecure": ("tls", f"{TLS}test_insecure_connects_and_says_so_on_stderr"),
    "--sni": ("tls", f"{TLS}test_client_refuses_a_name_the_certificate_does_not_hold"),
    "--no-sni": ("tls", f"{TLS}test_no_sni_still_checks_the_name_against_the_host"),
    "--cert": ("tls", f"{TLS}test_client_certificate_for_a_server_that_requires_one"),
    "--key": ("tls", f"{TLS}test_client_certificate_for_a_server_that_requires_one"),
    "--alpn": ("tls", f"{TLS}test_tls_event_in_json_names_version_alpn_and_peer"),
    "--tls-min": ("tls", f"{TLS}test_tls_min_above_what_the_server_speaks_fails_with_one_line"),
    "--ciphers": ("tls", f"{TLS}test_client_ciphers_are_the_only_ones_it_offers"),
    "--min-days": ("tls", f"{TLS}test_min_days_fails_on_a_certificate_expiring_sooner"),
    "--strict-close": (
        "tls",
        f"{TLS}test_a_server_that_ends_without_close_notify_is_a_warning_or_with_strict_close_a_failure",
    ),
    "--proxy": ("proxy", f"{PROXY}test_socks5_through_microsocks"),
    "--proxy-auth": ("proxy", f"{PROXY}test_socks5_password_in_the_url_or_in_proxy_auth"),
}
_RECORD = "record"  # --record FILE: its own aspect (a copy of the traffic to a file)
_RECORDS_DATAGRAMS = f"{FWD}test_udp_listen_and_udp_send_record_their_datagrams"
_TLS_LISTEN = {
    "--tls": ("tls", f"{TLS}test_ephemeral_certificate_fingerprint_is_printed_and_pins_for_socktools_client"),
    "--cert": ("tls", f"{TLS}test_openssl_s_client_talks_to_a_listener_with_given_certificate"),
    "--key": ("tls", f"{TLS}test_openssl_s_client_talks_to_a_listener_with_given_certificate"),
    "--client-ca": ("tls", f"{TLS}test_client_ca_requires_a_client_certificate"),
    "--alpn": ("tls", f"{TLS}test_listener_alpn_and_tls_min_are_what_its_clients_get"),
    "--tls-min": ("tls", f"{TLS}test_listener_alpn_and_tls_min_are_what_its_clients_get"),
    "--ciphers": ("tls", f"{TLS}test_listener_ciphers_are_the_only_ones_it_agrees_to"),
    "--strict-close": ("tls", f"{TLS}test_every_byte_arrives_both_ways_between_socktool_client_and_server"),
}
_TLS_NEEDS = {"--tls"}
_WAIT_TLS = ("--ca", "--pin", "--insecure", "--sni", "--min-days")  # wait --tls: the checks of a probe
_PING_TLS_CHECKS = "test_tls_ca_sni_insecure_and_min_days_decide_each_probe"
_FORWARD_TLS = {  # forward: TLS on the listening side, the target side or both
    "--tls-listen": ("tls", f"{FWD_TLS}test_tcp_connect_pins_the_ephemeral_certificate_and_every_byte_comes_back"),
    "--tls-target": ("tls", f"{FWD_TLS}test_tls_target_checks_the_ca_and_the_sni_name"),
    "--cert": ("tls", f"{FWD_TLS}test_s_client_to_tls_listen_and_tls_target_to_s_server"),
    "--key": ("tls", f"{FWD_TLS}test_s_client_to_tls_listen_and_tls_target_to_s_server"),
    "--ca": ("tls", f"{FWD_TLS}test_tls_target_checks_the_ca_and_the_sni_name"),
    "--sni": ("tls", f"{FWD_TLS}test_tls_target_checks_the_ca_and_the_sni_name"),
    "--pin": ("tls", f"{FWD_TLS}test_tls_target_without_trust_closes_that_client_and_pin_or_insecure_connect"),
    "--insecure": ("tls", f"{FWD_TLS}test_tls_target_without_trust_closes_that_client_and_pin_or_insecure_connect"),
    "--proxy": ("proxy", f"{FWD_PROXY}test_twenty_clients_at_once_through_socks5_each_get_their_own_bytes"),
    "--proxy-auth": ("proxy", f"{FWD_PROXY}test_http_connect_with_proxy_auth_through_ncat"),
}
FRAMES = "test_frames.py::"
_FRAME = {  # issue 15: messages on a stream
    "--frame": ("frame", f"{FRAMES}test_three_messages_in_one_write_and_one_in_three_writes_are_four_records_in_json"),
    "--max-frame": ("frame", f"{FRAMES}test_a_message_over_max_frame_on_the_pipe_is_one_error_line"),
    "--checksum": ("frame", f"{FRAMES}test_send_and_checksum_are_framed_on_the_way_out"),
}
_FRAME_PAIRS = {
    "--frame --max-frame": f"{FRAMES}test_a_message_over_max_frame_on_the_pipe_is_one_error_line",
    "--send --checksum": f"{FRAMES}test_send_and_checksum_are_framed_on_the_way_out",
    "--frame --json": f"{FRAMES}test_three_messages_in_one_write_and_one_in_three_writes_are_four_records_in_json",
    "--frame --view": f"{FRAMES}test_the_view_shows_one_record_per_message",
    "--crlf --frame": REFUSED,
    "--crlf --checksum": REFUSED,
}

OPTIONS: dict[str, dict[str, tuple[str, str]]] = {
    "tcp-connect": {
        **_RELAY,
        **_common("tcp-connect"),
        "-z": ("zero", f"{PIPE}test_zero_mode_connects_and_closes"),
        "-w": ("timeout", f"{ERRORS}test_connect_timeout_against_a_full_accept_queue"),
        "-s": ("source", f"{PIPE}test_source_port_is_used"),
        "-p": ("source", f"{PIPE}test_source_port_is_used"),
        "--progress": ("progress", f"{BEHAVIOUR}test_progress_draws_a_transfer_bar_on_stderr[tcp-connect]"),
        **_TLS_CONNECT,
        **_FRAME,
        "--record": (_RECORD, f"{FWD}test_tcp_connect_record_keeps_both_directions_and_stdout_stays_raw"),
    },
    # tcp-listen builds its payload and relay options with the same helpers as
    # tcp-connect (cli/tcp.py _payload, _relay_options): tcp-connect's tests show them.
    "tcp-listen": {
        **_RELAY,
        **_common("tcp-listen"),
        "-k": ("serving", f"{MANY}test_five_concurrent_clients_are_all_delivered"),
        "--max-clients": ("serving", f"{MANY}test_max_clients_turns_away_the_extra_without_disturbing_others"),
        "--exec": ("serving", f"{MANY}test_exec_wires_each_connection_to_a_process_without_a_shell"),
        "--broker": ("serving", f"{MANY}test_broker_relays_between_clients"),
        "--allow": ("access", f"{MANY}test_allow_and_deny_are_enforced_before_any_byte_is_read"),
        "--deny": ("access", f"{MANY}test_deny_wins_and_ipv6_cidrs_work"),
        "--reuse-addr": ("reuse", f"{BEHAVIOUR}test_reuse_addr_is_set_unless_refused[--reuse-addr]"),
        "--no-reuse-addr": ("reuse", f"{BEHAVIOUR}test_reuse_addr_is_set_unless_refused[--no-reuse-addr]"),
        "-w": ("timeout", f"{BEHAVIOUR}test_listen_timeout_gives_up_without_a_client"),
        "--progress": ("progress", f"{BEHAVIOUR}test_progress_draws_a_transfer_bar_on_stderr[tcp-listen]"),
        **_TLS_LISTEN,
        **_FRAME,
        "--control": ("console", f"{CONSOLE}test_control_json_drives_the_same_scenario_and_answers_in_json"),
        "--record": (_RECORD, f"{FWD}test_tcp_listen_record_keeps_both_directions_of_its_client"),
        "--keepalive": ("keepalive", f"{BEHAVIOUR}test_socket_options_reach_the_connection[--keepalive]"),
        "--nodelay": ("nodelay", f"{BEHAVIOUR}test_socket_options_reach_the_connection[--nodelay]"),
    },
    "udp-send": {
        **_common("udp-send"),
        "MESSAGE": ("payload", f"{UDP}test_send_message_exactly_without_newline"),
        "--lines": ("payload", f"{UDP}test_send_lines_one_datagram_per_line"),
        "--hex-input": ("payload", f"{UDP}test_send_hex_input_from_message_and_stdin"),
        "--count": ("pacing", f"{UDP}test_send_count_with_interval_paces_datagrams"),
        "--interval": ("pacing", f"{UDP}test_send_count_with_interval_paces_datagrams"),
        "--wait": ("replies", f"{UDP}test_wait_prints_the_reply_of_a_python_server"),
        "--timeout": ("replies", f"{UDP}test_wait_without_reply_exits_1"),
        "--replies": ("replies", "test_view_behaviour.py::test_udp_send_replies_n_exits_after_n_replies"),
        "--broadcast": ("broadcast", f"{UDP}test_broadcast_needs_the_flag"),
        "--ttl": ("ttl", f"{UDP}test_ttl_is_set_on_the_datagram"),
        "--interface": ("interface", f"{UDP}test_multicast_on_a_named_interface"),
        "-s": ("source", f"{UDP}test_source_address_and_port"),
        "-p": ("source", f"{UDP}test_source_address_and_port"),
        "--hex": ("format", f"{BEHAVIOUR}test_udp_send_view_shows_what_was_sent[--hex]"),
        "--full": ("format", "test_view_behaviour.py::test_full_draws_every_chunk_whole"),
        "--json": ("format", f"{UDP}test_wait_shows_replies_as_json_from_their_source"),
        "--view": ("format", f"{BEHAVIOUR}test_udp_send_view_shows_what_was_sent[--view]"),
        "--raw": ("format", f"{UDP}test_wait_prints_the_reply_of_a_python_server"),
        "--record": (_RECORD, _RECORDS_DATAGRAMS),
    },
    "udp-listen": {
        **_common("udp-listen"),
        "--reply": ("answer", f"{UDP}test_listen_answers_a_python_client_with_reply"),
        "--echo": ("answer", f"{UDP}test_listen_echo_sends_each_datagram_back"),
        "--count": ("ending", f"{UDP}test_listen_writes_binary_empty_and_largest_datagrams_exactly"),
        "--timeout": ("ending", f"{UDP}test_listen_timeout_without_datagrams_exits_1"),
        "--group": ("multicast", f"{UDP}test_multicast_ipv4_group_on_loopback"),
        "--interface": ("multicast", f"{UDP}test_multicast_on_a_named_interface"),
        "--hex": ("format", f"{UDP}test_listen_hex_view"),
        "--full": ("format", "test_view_behaviour.py::test_full_draws_every_chunk_whole"),
        "--json": ("format", f"{UDP}test_listen_json_one_record_per_datagram"),
        "--view": ("format", f"{UDP}test_listen_view_draws_a_line_per_datagram_and_counters"),
        "--raw": ("format", f"{UDP}test_listen_writes_binary_empty_and_largest_datagrams_exactly"),
        "--control": ("console", f"{CONSOLE}test_udp_listen_control_json_answers_the_last_sender"),
        "--reply-last": ("answer", f"{CONSOLE}test_udp_listen_console_answers_one_peer_and_reply_last"),
        "--record": (_RECORD, _RECORDS_DATAGRAMS),
    },
    "echo": {
        **_common("echo"),
        "--tcp-only": ("transport", f"{ECHO}test_tcp_only_serves_no_udp_and_udp_only_no_tcp"),
        "--udp-only": ("transport", f"{ECHO}test_tcp_only_serves_no_udp_and_udp_only_no_tcp"),
        "--max-clients": ("clients", f"{ECHO}test_max_clients_turns_away_extra_clients"),
        "-i": ("clients", f"{ECHO}test_idle_timeout_closes_a_silent_client_but_not_a_busy_one"),
        "--json": ("format", f"{ECHO}test_json_events_describe_clients_and_datagrams"),
        **{option: entry for option, entry in _TLS_LISTEN.items() if option != "--strict-close"},
        "--tls": ("tls", f"{TLS}test_echo_over_tls_with_the_printed_fingerprint"),
    },
    "time-server": {
        **_common("time-server"),
        "--rfc868": ("reply", f"{TIME}test_rfc868_client_decodes_a_time_within_seconds_of_now"),
        "--utc": ("reply", f"{TIME}test_utc_option"),
        "--tcp-only": ("transport", f"{TIME}test_tcp_only_and_udp_only"),
        "--udp-only": ("transport", f"{TIME}test_tcp_only_and_udp_only"),
        "--json": ("format", f"{TIME}test_json_events"),
    },
    "forward": {
        **_common("forward"),
        "--max-clients": ("clients", f"{FWD}test_max_clients_turns_away_the_extra_client"),
        "--allow": ("access", f"{FWD_UDP}{_WHO}[tcp]"),
        "--deny": ("access", f"{FWD}test_deny_turns_a_client_away_before_any_byte"),
        "-w": ("timeout", f"{FWD}test_connect_timeout_closes_the_client"),
        "-i": ("idle", f"{FWD}test_idle_timeout_closes_a_silent_pair"),
        "-s": ("source", f"{FWD}test_source_address_is_used_for_the_target_side"),
        "--keepalive": ("keepalive", f"{BEHAVIOUR}test_socket_options_reach_the_connection[--keepalive]"),
        "--nodelay": ("nodelay", f"{BEHAVIOUR}test_socket_options_reach_the_connection[--nodelay]"),
        "--delay": ("delay", f"{FWD}test_delay_adds_its_time_to_each_round_trip"),
        "--jitter": ("delay", _JITTER),
        "--seed": ("delay", f"{FWD_UDP}test_drop_drops_about_that_share_and_the_same_seed_drops_the_same_datagrams"),
        "--rate": ("rate", f"{FWD}test_rate_moves_4mib_in_about_4_seconds"),
        "--chunk": ("chunk", f"{FWD}test_chunk_1_delivers_one_byte_per_read"),
        "--chunk-delay": ("chunk", f"{FWD}test_chunk_1_delivers_one_byte_per_read"),
        "--reset-after": ("cut", f"{FWD}test_reset_after_resets_after_exactly_that_many_bytes"),
        "--close-after": ("cut", f"{FWD}test_close_after_closes_after_exactly_that_many_bytes"),
        "--upstream": ("fault direction", f"{FWD}test_delay_adds_its_time_to_each_round_trip"),
        "--downstream": ("fault direction", f"{FWD}test_reset_after_resets_after_exactly_that_many_bytes"),
        "--record": ("record", f"{FWD}test_record_rebuilds_both_directions_exactly"),
        "--udp": ("transport", f"{FWD_UDP}test_two_clients_get_only_their_own_replies"),
        "--udp-to-tcp": (
            "transport",
            f"{FWD_UDP}test_udp_to_tcp_one_datagram_is_one_write_and_each_line_back_a_datagram",
        ),
        "--tcp-to-udp": (
            "transport",
            f"{FWD_UDP}test_tcp_to_udp_each_line_is_one_datagram_and_each_datagram_back_one_write",
        ),
        "--drop": ("drop", f"{FWD_UDP}test_drop_drops_about_that_share_and_the_same_seed_drops_the_same_datagrams"),
        "--frame": ("frame", f"{FRAMES}test_forward_shows_one_record_per_message_both_ways"),
        "--max-frame": ("frame", f"{FRAMES}test_forward_max_frame_warns_and_shows_that_connection_per_read"),
        "--hex": ("format", f"{FWD}test_hex_view_draws_both_directions_as_hex_rows"),
        "--json": ("format", f"{FWD}test_curl_through_forward_gets_the_page_and_json_shows_request_and_response"),
        "--view": ("format", f"{FWD}test_view_labels_both_directions_of_each_connection"),
        "--no-view": ("format", f"{FWD}test_nc_through_forward_to_echo_gets_5mb_back_intact"),
        **_FORWARD_TLS,
    },
    "portscan": {
        **_common("portscan"),
        "-c": ("concurrency", f"{SCAN}test_concurrency_beyond_the_open_file_limit_is_capped_with_a_warning"),
        "-w": ("timing", f"{SCAN}test_filtered_port_is_retried_then_reported_filtered"),
        "--retries": ("timing", f"{SCAN}test_filtered_port_is_retried_then_reported_filtered"),
        "--all": ("listing", f"{SCAN}test_plain_lines_name_the_service"),
        "--require-open": ("exit", f"{SCAN}test_require_open_exits_1_naming_the_ports_not_open"),
        "--udp": ("protocol", f"{PROBES}test_udp_scan_states"),
        "--banner": ("banner", f"{PROBES}test_banners_of_an_ssh_like_server_an_http_server_and_a_silent_port"),
        "--banner-size": ("banner", f"{PROBES}test_banner_size_cuts_the_banner"),
        "--json": ("format", f"{SCAN}test_json_report_of_many_ports_is_one_whole_object_per_line"),
        "--view": ("format", f"{SCAN}test_terminal_gets_a_table_and_a_summary"),
        "--raw": ("format", f"{SCAN}test_without_all_only_open_ports_are_listed_as_plain_lines"),
        "--proxy": ("proxy", f"{PROXY}test_portscan_through_a_proxy_finds_what_a_direct_scan_finds"),
        "--proxy-auth": ("proxy", f"{PROXY}test_portscan_with_proxy_auth_scans_and_wrong_credentials_stop_it"),
    },
    "ping": {
        **_common("ping"),
        "-c": ("count", f"{PING}test_five_probes_and_a_ping_style_summary"),
        "-i": ("count", f"{PING}test_five_probes_and_a_ping_style_summary"),
        "--require": ("count", f"{PING}test_require_counts_answered_probes"),
        "-w": ("timeout", f"{PING}test_timeout_is_how_long_a_probe_waits_for_its_answer"),
        "--udp": ("probe", f"{PING}test_udp_round_trips_against_echo_and_time_server"),
        "--send": ("probe", f"{PING}test_udp_round_trips_against_echo_and_time_server"),
        "--expect": ("probe", f"{PING}test_udp_round_trips_against_echo_and_time_server"),
        "--json": ("format", f"{PING}test_json_per_probe_and_summary"),
        "--tls": ("probe", f"{PING}test_tls_times_connect_and_handshake_against_a_pinned_listener"),
        "--pin": ("tls", f"{PING}test_tls_pin_mismatch_is_100_percent_loss_with_the_reason_and_exit_1"),
        **{name: ("tls", f"{PING}{_PING_TLS_CHECKS}") for name in ("--ca", "--insecure", "--sni", "--min-days")},
    },
    "ui": {
        "-4": ("family", "test_ui.py::test_family_flags_apply_to_the_sessions"),
        "-6": ("family", "test_ui.py::test_family_flags_apply_to_the_sessions"),
        "--no-color": ("color", "test_ui.py::test_ui_starts_in_a_terminal_draws_and_quits_on_ctrl_q"),
    },
    "wait": {
        **_common("wait"),
        "--interval": ("timing", f"{WAIT}test_exits_1_on_timeout_naming_the_endpoint_and_why"),
        "-w": ("timing", f"{WAIT}test_succeeds_when_the_port_comes_up_a_second_later"),
        "--invert": ("goal", f"{WAIT}test_invert_waits_until_the_port_refuses"),
        "--json": ("format", f"{WAIT}test_json_is_a_record_per_endpoint_up_or_failed_then_the_error"),
        "--udp": ("check", f"{CHECKS}test_udp_probe_against_echo_and_time_server"),
        "--send": ("check", f"{CHECKS}test_send_then_expect_against_the_echo_server"),
        "--expect": ("check", f"{CHECKS}test_expect_waits_for_a_banner_that_comes_late"),
        "--http": ("check", f"{CHECKS}test_http_timeout_names_the_status_it_got"),
        "--status": ("check", f"{CHECKS}test_http_endpoint_waits_for_status_200_after_404s"),
        "--tls": ("check", f"{TLS}test_wait_tls_is_up_when_the_certificate_verifies"),
        "--ca": ("tls", f"{TLS}test_wait_tls_is_up_when_the_certificate_verifies"),
        "--pin": ("tls", f"{TLS}test_wait_tls_is_up_when_the_certificate_verifies"),
        "--insecure": ("tls", f"{TLS}test_wait_tls_insecure_sni_and_min_days_each_decide_up_or_down"),
        "--sni": ("tls", f"{TLS}test_wait_tls_insecure_sni_and_min_days_each_decide_up_or_down"),
        "--min-days": ("tls", f"{TLS}test_wait_tls_insecure_sni_and_min_days_each_decide_up_or_down"),
        "--proxy": (
            "proxy",
            f"{PROXY}test_wait_through_a_proxy_is_up_when_the_target_listens_and_says_the_proxys_words_when_not",
        ),
        "--proxy-auth": ("proxy", f"{PROXY}test_wait_with_proxy_auth_through_ncats_http_proxy"),
    },
}

# Options that need another one (given without any of these, they are refused).
# --full (and forward's --hex) draw the view, which stdout here (not a terminal) gets only
# with --view; the relay commands' --hex is a plain hex dump there.
NEEDS: dict[str, dict[str, set[str] | tuple[set[str], ...]]] = {
    "tcp-connect": {
        "--interval": {"--repeat"},
        "--full": {"--view"},
        **{option: _TLS_NEEDS for option in _TLS_CONNECT if option not in ("--tls", "--proxy", "--proxy-auth")},
        "--key": (_TLS_NEEDS, {"--cert"}),  # both, so never with one other option alone
        "--proxy-auth": {"--proxy"},
        "--max-frame": {"--frame"},
        "--checksum": {"--send"},  # added to --send messages; stdin is a stream
    },
    "tcp-listen": {
        "--interval": {"--repeat"},
        "--full": {"--view"},
        "--max-clients": {"-k", "--broker"},
        "--control": {"-k", "--broker"},  # (the value here is json; one client's stdin is its payload)
        **{option: _TLS_NEEDS for option in _TLS_LISTEN if option != "--tls"},
        "--key": (_TLS_NEEDS, {"--cert"}),
        "--max-frame": {"--frame"},
        "--checksum": {"--send", "--control"},  # --send or console messages (a terminal, not here)
    },
    "echo": {
        **{option: _TLS_NEEDS for option in _TLS_LISTEN if option not in ("--tls", "--strict-close")},
        "--key": (_TLS_NEEDS, {"--cert"}),
    },
    "udp-send": {"--interval": {"--count", "--lines"}, "--full": {"--view"}},
    # --reply-last answers lines typed at the console: a terminal on stdin (not here) or --control json
    "udp-listen": {"--interface": {"--group"}, "--full": {"--view"}, "--reply-last": {"--control"}},
    "forward": {
        "--upstream": {"--delay", "--jitter", "--rate", "--chunk", "--reset-after", "--close-after"},
        "--downstream": {"--delay", "--jitter", "--rate", "--chunk", "--reset-after", "--close-after"},
        "--seed": {"--jitter", "--drop"},
        "--drop": {"--udp", "--udp-to-tcp", "--tcp-to-udp"},
        "--max-frame": {"--frame"},
        "--chunk-delay": {"--chunk"},
        "--hex": {"--view"},
        "--cert": {"--tls-listen"},
        "--key": ({"--tls-listen"}, {"--cert"}),
        **{option: {"--tls-target"} for option in ("--ca", "--sni", "--pin", "--insecure")},
        "--proxy-auth": {"--proxy"},
    },
    "portscan": {"--proxy-auth": {"--proxy"}},
    "wait": {"--status": {"--http"}, "--proxy-auth": {"--proxy"}, **{option: _TLS_NEEDS for option in _WAIT_TLS}},
    "ping": {option: _TLS_NEEDS for option in _WAIT_TLS},  # ping --tls: the same checks
}

# Pairs that interact: "refused", or the test that runs them together.
_FULL_PAIRS = {
    "--full --json": REFUSED,
    "--full --raw": REFUSED,
    "--full --view": "test_view_behaviour.py::test_full_draws_every_chunk_whole",
    "--hex --full": "test_view_behaviour.py::test_full_hex_draws_every_row",
}
_LINGER = ("--keep-sending", "--quit-after")  # nc's half-close habits: both directions of one relay
_RELAY_PAIRS = {
    "--send --hex-input": f"{BEHAVIOUR}test_hex_input_send_crlf_and_repeat_together",
    "--send --crlf": f"{PIPE}test_send_repeat_interval_crlf_and_hex_input",
    "--send --repeat": f"{PIPE}test_send_repeat_interval_crlf_and_hex_input",
    "--hex-input --crlf": f"{BEHAVIOUR}test_hex_input_send_crlf_and_repeat_together",
    "--hex-input --repeat": f"{BEHAVIOUR}test_hex_input_send_crlf_and_repeat_together",
    "--crlf --repeat": f"{PIPE}test_send_repeat_interval_crlf_and_hex_input",
    "--repeat --interval": f"{PIPE}test_send_repeat_interval_crlf_and_hex_input",
    "--send-only --recv-only": REFUSED,
    "--no-shutdown --send-only": REFUSED,
    **{f"--recv-only {name}": REFUSED for name in ("--send", "--hex-input", "--crlf", "--repeat", "--no-shutdown")},
    "--send-only --expect": REFUSED,
    "--send-only -i": REFUSED,
    "--recv-only --expect": f"{PIPE}test_expect_exits_0_on_match_and_1_when_peer_closes_without_one",
    "--recv-only -i": f"{PIPE}test_idle_timeout_closes_a_quiet_connection",
    "--expect -i": f"{BEHAVIOUR}test_idle_timeout_ends_an_expect_wait_unmet",
    "--expect -w": f"{PIPE}test_expect_times_out_with_exit_1",
    "--hex --json": REFUSED,
    "--hex --raw": REFUSED,
    "--hex --view": f"{BEHAVIOUR}test_hex_view_in_a_pipe_with_view",
    **_FULL_PAIRS,
    "--json --view": REFUSED,
    "--json --raw": REFUSED,
    "-v -q": REFUSED,
    "-4 -6": REFUSED,
    "--progress -q": REFUSED,
    **{f"{name} {only}": REFUSED for name in _LINGER for only in ("--send-only", "--recv-only")},
    "--quit-after --tls": REFUSED,  # not with TLS yet
}
_ZERO = {
    f"-z {name}": REFUSED
    for name in (
        *("--send", "--hex-input", "--crlf", "--repeat", "--no-shutdown", "--send-only", "--recv-only"),
        *("--expect", "-i", "--hex", "--full", "--progress", "--view", "--raw", "--keepalive", "--nodelay"),
    )
}
_OUTPUT_PAIRS = {
    "--hex --json": REFUSED,
    "--json --view": REFUSED,
    "--json --raw": REFUSED,
    "--hex --raw": REFUSED,
    "--hex --view": f"{BEHAVIOUR}test_hex_view_in_a_pipe_with_view",
    **_FULL_PAIRS,
}
_MODES = ("-k", "--broker", "--exec")  # tcp-listen's serving modes
PAIRS: dict[str, dict[str, str]] = {
    "tcp-connect": {
        **_RELAY_PAIRS,
        **_ZERO,
        "-s -p": f"{PIPE}test_source_port_is_used",
        **{f"--proxy {name}": REFUSED for name in ("-4", "-6", "-s", "-p")},
        "--tls --ca": f"{TLS}test_client_verifies_a_server_signed_by_the_given_ca_and_relays_its_reply",
        "--tls --pin": f"{TLS}test_pin_accepts_exactly_that_certificate_and_names_the_one_seen_otherwise",
        "--tls --insecure": f"{TLS}test_insecure_connects_and_says_so_on_stderr",
        "--tls --sni": f"{TLS}test_client_refuses_a_name_the_certificate_does_not_hold",
        "--tls --no-sni": f"{TLS}test_no_sni_still_checks_the_name_against_the_host",
        "--tls --cert": f"{TLS}test_client_certificate_for_a_server_that_requires_one",
        "--tls --alpn": f"{TLS}test_tls_event_in_json_names_version_alpn_and_peer",
        "--tls --tls-min": f"{TLS}test_tls_min_above_what_the_server_speaks_fails_with_one_line",
        "--tls --min-days": f"{TLS}test_min_days_fails_on_a_certificate_expiring_sooner",
        "--tls --strict-close": f"{TLS}test_a_server_that_ends_with_close_notify_is_a_clean_end",
        "--tls -z": f"{TLS}test_client_refuses_a_name_the_certificate_does_not_hold",
        "--tls --json": f"{TLS}test_tls_event_in_json_names_version_alpn_and_peer",
        "--tls --send": f"{TLS}test_client_verifies_a_server_signed_by_the_given_ca_and_relays_its_reply",
        "--tls --recv-only": f"{TLS}test_a_server_that_ends_without_close_notify_is_a_warning_or_with_strict_close_a_failure",
        "--tls -v": f"{TLS}test_pin_accepts_exactly_that_certificate_and_names_the_one_seen_otherwise",
        "--tls --ciphers": f"{TLS}test_client_ciphers_are_the_only_ones_it_offers",
        "--tls --proxy": f"{PROXY}test_tls_through_a_proxy_verifies_the_target",
        "--proxy --proxy-auth": f"{PROXY}test_socks5_password_in_the_url_or_in_proxy_auth",
        "--proxy --recv-only": f"{PROXY}test_socks5_through_microsocks",
        **{f"-z {name}": REFUSED for name in ("--frame", *_LINGER)},  # nothing moves
        **_FRAME_PAIRS,
    },
    "tcp-listen": {
        **_RELAY_PAIRS,
        "--allow --deny": f"{MANY}test_deny_wins_and_ipv6_cidrs_work",
        "-k --max-clients": f"{MANY}test_max_clients_turns_away_the_extra_without_disturbing_others",
        "-k --exec": f"{MANY}test_exec_wires_each_connection_to_a_process_without_a_shell",
        "-k --broker": f"{MANY}test_broker_relays_between_clients",
        "--exec --broker": REFUSED,
        "-k --send": f"{KEEP}test_keep_open_sends_the_greeting_to_every_client_on_connect",
        "-k --send-only": f"{KEEP}test_keep_open_send_only_sends_and_drops_what_clients_send",
        "-k --expect": f"{KEEP}test_keep_open_expect_closes_the_client_that_matched_and_keeps_serving",
        "-k --crlf": f"{KEEP}test_keep_open_crlf_and_hex_input_translate_stdin_for_every_client",
        "-k --hex-input": f"{KEEP}test_keep_open_crlf_and_hex_input_translate_stdin_for_every_client",
        "-k --repeat": f"{ENGINE}test_keep_open_repeats_the_payload_with_its_interval_for_each_client",
        "-k -i": f"{ENGINE}test_idle_timeout_closes_a_silent_connection",
        "--broker --send-only": f"{KEEP}test_broker_send_only_relays_nothing_between_clients",
        "--broker --recv-only": f"{KEEP}test_broker_recv_only_sends_clients_nothing",
        "--exec --crlf": f"{KEEP}test_exec_crlf_translates_the_commands_output",
        "--tls -k": f"{TLS}test_keep_open_tls_serves_clients_one_after_another_and_a_plaintext_one_does_not_stop_it",
        "--tls --exec": f"{TLS}test_exec_over_tls_talks_plaintext_to_the_command",
        "--tls --broker": f"{TLS}test_clients_that_never_speak_tls_do_not_hold_up_a_real_one",
        "--tls --cert": f"{TLS}test_openssl_s_client_talks_to_a_listener_with_given_certificate",
        "--tls --client-ca": f"{TLS}test_client_ca_requires_a_client_certificate",
        "--tls --alpn": f"{TLS}test_listener_alpn_and_tls_min_are_what_its_clients_get",
        "--tls --tls-min": f"{TLS}test_listener_alpn_and_tls_min_are_what_its_clients_get",
        "--tls --ciphers": f"{TLS}test_listener_ciphers_are_the_only_ones_it_agrees_to",
        "--tls --strict-close": f"{TLS}test_every_byte_arrives_both_ways_between_socktool_client_and_server",
        # the listener outlives its clients: a ragged end is a warning there, never the run's status
        **{f"--strict-close {many}": REFUSED for many in ("-k", "--broker")},
        "--strict-close --exec": f"{TLS}test_strict_close_fails_a_one_client_exec_listener_and_is_refused_where_the_listener_outlives_its_clients",
        "--tls --json": f"{TLS}test_ephemeral_certificate_fingerprint_is_printed_and_pins_for_socktools_client",
        "--tls --send": f"{TLS}test_openssl_s_client_talks_to_a_listener_with_given_certificate",
        "--tls --no-shutdown": f"{TLS}test_openssl_s_client_talks_to_a_listener_with_given_certificate",
        "-k --control": f"{CONSOLE}test_control_json_drives_the_same_scenario_and_answers_in_json",
        **_FRAME_PAIRS,
        "--frame --send": f"{FRAMES}test_send_and_checksum_are_framed_on_the_way_out",
        "-k --frame": f"{FRAMES}test_a_message_over_max_frame_closes_only_that_client",
        "--frame --control": f"{FRAMES}test_console_messages_get_the_frame",
        **{
            f"--exec {name}": REFUSED
            for name in ("--send", "--hex-input", "--repeat", "--expect", "--progress", "--hex")
        },
        **{f"{mode} -w": f"{BEHAVIOUR}test_listen_timeout_gives_up_without_a_client[{mode}]" for mode in _MODES},
        **{f"{mode} -i": f"{KEEP}test_idle_timeout_closes_a_silent_client_in_every_mode[{mode}]" for mode in _MODES},
        "-k --no-shutdown": f"{KEEP}test_keep_open_no_shutdown_keeps_each_clients_write_side_open",
        "-k --recv-only": f"{KEEP}test_keep_open_recv_only_sends_clients_nothing",
        "--broker --send": f"{KEEP}test_broker_greets_each_client_and_closes_the_one_that_matched",
        "--broker --repeat": f"{KEEP}test_broker_greets_each_client_and_closes_the_one_that_matched",
        "--broker --expect": f"{KEEP}test_broker_greets_each_client_and_closes_the_one_that_matched",
        "--broker --hex-input": f"{KEEP}test_broker_crlf_and_hex_input_translate_stdin_for_every_client",
        "--broker --crlf": f"{KEEP}test_broker_crlf_and_hex_input_translate_stdin_for_every_client",
        "--max-clients --broker": f"{KEEP}test_broker_max_clients_turns_away_the_extra_and_relays_between_the_others",
        "--broker --control": "test_console.py::test_broker_with_a_console_relays_between_clients_and_takes_commands",
        "--exec --send-only": f"{KEEP}test_exec_send_only_and_recv_only_cut_one_direction[--send-only]",
        "--exec --recv-only": f"{KEEP}test_exec_send_only_and_recv_only_cut_one_direction[--recv-only]",
        "--exec --no-shutdown": f"{KEEP}test_exec_no_shutdown_keeps_the_write_side_open_after_the_commands_output",
        "--broker --no-shutdown": REFUSED,  # a broker never shuts a client's write side
        **{f"{mode} --progress": REFUSED for mode in ("-k", "--broker")},  # one bar, many transfers
        **{f"{mode} --record": REFUSED for mode in _MODES},  # what clients are sent is not recorded
        **{f"--exec {name}": REFUSED for name in ("--frame", "--checksum")},  # the command gets bytes
        **{f"{mode} {name}": REFUSED for mode in _MODES for name in _LINGER},  # one relayed connection only
    },
    "udp-send": {
        "-v -q": REFUSED,
        "-4 -6": REFUSED,
        **_OUTPUT_PAIRS,
        "MESSAGE --lines": REFUSED,
        "MESSAGE --hex-input": f"{UDP}test_send_hex_input_from_message_and_stdin",
        "--lines --hex-input": f"{UDP}test_send_hex_input_from_message_and_stdin",
        "--count --interval": f"{UDP}test_send_count_with_interval_paces_datagrams",
        "--lines --interval": f"{BEHAVIOUR}test_lines_are_paced_by_interval",
        "--wait --timeout": f"{UDP}test_wait_without_reply_exits_1",
        "--wait --replies": "test_view_behaviour.py::test_udp_send_replies_n_exits_after_n_replies",
        "--timeout --replies": "test_view_behaviour.py::test_udp_send_replies_n_exits_after_n_replies",
        "--broadcast -6": REFUSED,
        "-s -p": f"{UDP}test_source_address_and_port",
        "--hex --view": f"{BEHAVIOUR}test_udp_send_view_shows_what_was_sent[--hex]",
    },
    "udp-listen": {
        "-v -q": REFUSED,
        "-4 -6": REFUSED,
        **_OUTPUT_PAIRS,
        "--reply --echo": REFUSED,
        "--reply --reply-last": REFUSED,
        "--echo --reply-last": REFUSED,
        "--reply-last --control": f"{CONSOLE}test_udp_listen_console_answers_one_peer_and_reply_last",
        "--control --json": f"{CONSOLE}test_udp_listen_control_json_answers_the_last_sender",
        "--reply --control": REFUSED,  # --control json answers by command, not by rule
        "--echo --control": REFUSED,
        "--count --timeout": f"{UDP}test_listen_timeout_with_fewer_than_count_exits_1",
        "--group --interface": f"{UDP}test_multicast_on_a_named_interface",
        "--hex --view": f"{UDP}test_listen_hex_view",
    },
    "echo": {
        "-v -q": REFUSED,
        "-4 -6": REFUSED,
        "--tcp-only --udp-only": REFUSED,
        "--max-clients -i": f"{BEHAVIOUR}test_echo_max_clients_and_idle_timeout_together",
        "--max-clients --udp-only": REFUSED,
        "-i --udp-only": REFUSED,
        "--tls --udp-only": REFUSED,
        # echo's TLS side is tcp-listen -k's: one server context and one loop transport (net/tlsloop.py)
        "--tls --cert": f"{TLS}test_openssl_s_client_talks_to_a_listener_with_given_certificate",
        "--tls --client-ca": f"{TLS}test_client_ca_requires_a_client_certificate",
        "--tls --alpn": f"{TLS}test_listener_alpn_and_tls_min_are_what_its_clients_get",
        "--tls --tls-min": f"{TLS}test_listener_alpn_and_tls_min_are_what_its_clients_get",
        "--tls --ciphers": f"{TLS}test_listener_ciphers_are_the_only_ones_it_agrees_to",
    },
    "time-server": {
        "-v -q": REFUSED,
        "-4 -6": REFUSED,
        "--tcp-only --udp-only": REFUSED,
        "--rfc868 --utc": REFUSED,
    },
    "forward": {
        "-v -q": REFUSED,
        "-4 -6": REFUSED,
        "--hex --json": REFUSED,
        "--json --view": REFUSED,
        "--json --no-view": REFUSED,
        "--hex --no-view": REFUSED,
        "--upstream --downstream": REFUSED,
        "--chunk --chunk-delay": f"{FWD}test_chunk_1_delivers_one_byte_per_read",
        "--delay --upstream": f"{FWD}test_delay_adds_its_time_to_each_round_trip",
        "--reset-after --downstream": f"{FWD}test_reset_after_resets_after_exactly_that_many_bytes",
        "--udp --udp-to-tcp": REFUSED,
        "--udp --tcp-to-udp": REFUSED,
        "--udp-to-tcp --tcp-to-udp": REFUSED,
        **{
            f"--udp {name}": REFUSED
            for name in ("-w", "--keepalive", "--nodelay", "--rate", "--chunk", "--reset-after", "--close-after")
        },
        **{f"--udp-to-tcp {name}": REFUSED for name in ("--rate", "--chunk", "--reset-after", "--close-after")},
        "--tcp-to-udp -w": REFUSED,
        "--tcp-to-udp --chunk": REFUSED,  # both ways unless --downstream: the target takes whole datagrams
        "--tcp-to-udp --delay": f"{BRIDGE_FAULTS}test_delay_adds_its_time_to_each_round_trip[--upstream]",
        "--tcp-to-udp --jitter": f"{BRIDGE_FAULTS}test_jitter_varies_each_datagrams_delay_within_its_bounds_and_keeps_the_order",
        "--tcp-to-udp --rate": f"{BRIDGE_FAULTS}test_rate_paces_the_datagrams_to_the_target",
        "--tcp-to-udp --drop": f"{BRIDGE_FAULTS}test_drop_drops_about_that_share_and_the_same_seed_drops_the_same_datagrams",
        "--tcp-to-udp --reset-after": f"{BRIDGE_FAULTS}test_upstream_reset_after_sends_the_datagrams_of_exactly_those_bytes_then_resets_the_client",
        "--tcp-to-udp --close-after": f"{BRIDGE_FAULTS}test_downstream_cut_after_exactly_that_many_bytes_to_the_client[--close-after]",
        "--udp -i": f"{FWD_UDP}test_a_udp_session_ends_after_the_idle_timeout",
        "--udp --frame": REFUSED,  # datagrams both ways: no stream to frame
        "--tcp-to-udp --frame": f"{FWD_UDP}test_tcp_to_udp_with_frame_len16_each_message_is_a_datagram_and_each_datagram_back_a_message",
        "--udp-to-tcp --frame": f"{FWD_UDP}test_udp_to_tcp_with_frame_len8_a_datagram_is_one_message_and_each_message_back_a_datagram",
        "--frame --json": f"{FRAMES}test_forward_shows_one_record_per_message_both_ways",
        "--udp --drop": f"{FWD_UDP}test_drop_drops_about_that_share_and_the_same_seed_drops_the_same_datagrams",
        "--drop --seed": f"{FWD_UDP}test_drop_drops_about_that_share_and_the_same_seed_drops_the_same_datagrams",
        "--tls-listen --tls-target": _FORWARD_TLS["--cert"][1],
        "--tls-listen --cert": _FORWARD_TLS["--cert"][1],
        "--tls-target --ca": _FORWARD_TLS["--ca"][1],
        "--tls-target --sni": _FORWARD_TLS["--sni"][1],
        "--tls-target --pin": _FORWARD_TLS["--pin"][1],
        "--tls-target --insecure": _FORWARD_TLS["--insecure"][1],
        # TLS and a proxy need a stream on their side; a bridge's TCP side has none yet
        **{
            f"{mode} {side}": REFUSED
            for mode in ("--udp", "--udp-to-tcp", "--tcp-to-udp")
            for side in ("--tls-listen", "--tls-target", "--proxy")
        },
        "--proxy --proxy-auth": f"{FWD_PROXY}test_http_connect_with_proxy_auth_through_ncat",
        **{f"--proxy {name}": REFUSED for name in ("-s", "-4", "-6")},  # the proxy makes the connection
        "--proxy --tls-target": f"{FWD_PROXY}test_tls_target_through_a_socks5_proxy",
        "--allow --deny": f"{FWD_UDP}{_WHO}[tcp]",
        "--max-clients --allow": f"{FWD_UDP}{_WHO}[tcp]",
        "--max-clients --deny": f"{FWD_UDP}{_WHO}[tcp]",
        **{
            f"{mode} {name}": f"{FWD_UDP}{_WHO}[{mode}]"
            for mode in _BRIDGES
            for name in ("--allow", "--deny", "--max-clients")
        },
        "--hex --view": f"{FWD}test_hex_view_draws_both_directions_as_hex_rows",
        "--delay --jitter": _JITTER,
        "--jitter --seed": _JITTER,
        "--reset-after --close-after": "test_forward_units.py::test_close_after_and_reset_after_the_smaller_wins",
        "--frame --max-frame": f"{FRAMES}test_forward_max_frame_warns_and_shows_that_connection_per_read",
        **{
            f"{fault} {direction}": f"test_forward_units.py::test_a_fault_given_one_direction_acts_on_that_direction_only[{fault}-{direction}]"
            for fault in ("--delay", "--jitter", "--rate", "--chunk", "--reset-after", "--close-after")
            for direction in ("--upstream", "--downstream")
            if (fault, direction) not in (("--delay", "--upstream"), ("--reset-after", "--downstream"))
        },
    },
    "portscan": {
        "-v -q": REFUSED,
        "-4 -6": REFUSED,
        "--json --view": REFUSED,
        "--json --raw": REFUSED,
        "-w --retries": f"{SCAN}test_filtered_port_is_retried_then_reported_filtered",
        "--banner --banner-size": f"{PROBES}test_banner_size_cuts_the_banner",
        **{f"--proxy {name}": REFUSED for name in ("--udp", "-4", "-6")},  # the proxy connects, over TCP
        "--proxy --proxy-auth": f"{PROXY}test_portscan_with_proxy_auth_scans_and_wrong_credentials_stop_it",
        "--proxy --banner": f"{PROXY}test_portscan_banner_through_a_proxy_is_what_the_service_says",
    },
    "ping": {
        "-v -q": REFUSED,
        "-4 -6": REFUSED,
        "-c -i": f"{PING}test_five_probes_and_a_ping_style_summary",
        "-c --require": f"{PING}test_require_counts_answered_probes",
        "-i --require": f"{PING}test_require_counts_answered_probes",
        "--udp --send": f"{PING}test_udp_round_trips_against_echo_and_time_server",
        "--udp --expect": f"{PING}test_udp_round_trips_against_echo_and_time_server",
        "--send --expect": f"{PING}test_udp_round_trips_against_echo_and_time_server",
        **{f"--tls {name}": REFUSED for name in ("--udp", "--send", "--expect")},  # a TLS probe is its own check
        "--tls --pin": f"{PING}test_tls_times_connect_and_handshake_against_a_pinned_listener",
        **{f"--tls {name}": f"{PING}{_PING_TLS_CHECKS}" for name in ("--ca", "--insecure", "--sni", "--min-days")},
    },
    "ui": {"-4 -6": REFUSED},
    "wait": {
        "-v -q": REFUSED,
        "-4 -6": REFUSED,
        "--interval -w": f"{WAIT}test_exits_1_on_timeout_naming_the_endpoint_and_why",
        "--udp --http": REFUSED,
        "--send --http": REFUSED,
        "--udp --send": f"{CHECKS}test_udp_probe_against_echo_and_time_server",
        "--udp --expect": f"{CHECKS}test_udp_probe_against_echo_and_time_server",
        "--send --expect": f"{CHECKS}test_send_then_expect_against_the_echo_server",
        "--expect --http": f"{CHECKS}test_http_expect_matches_the_body",
        "--expect --status": REFUSED,
        "--http --status": f"{CHECKS}test_http_with_status_takes_the_statuses_given_as_up",
        "--tls --udp": REFUSED,  # no DTLS
        "--tls --http": f"{CHECKS}test_http_through_tls_is_up_only_after_the_status_turns_200",
        **{f"--tls {name}": f"{CHECKS}test_send_and_expect_through_tls" for name in ("--send", "--expect")},
        **{f"--tls {name}": f"{TLS}test_wait_tls_is_up_when_the_certificate_verifies" for name in ("--ca", "--pin")},
        **{
            f"--tls {name}": f"{TLS}test_wait_tls_insecure_sni_and_min_days_each_decide_up_or_down"
            for name in ("--insecure", "--sni", "--min-days")
        },
        **{f"--proxy {name}": REFUSED for name in ("--udp", "-4", "-6")},  # the proxy connects, over TCP
        "--proxy --proxy-auth": f"{PROXY}test_wait_with_proxy_auth_through_ncats_http_proxy",
        **{
            f"--proxy {name}": f"{PROXY}test_wait_http_and_tls_checks_run_over_the_proxys_connection"
            for name in ("--tls", "--http", "--ca", "--sni")
        },
    },
}


class Outcome(NamedTuple):
    refused: bool
    stderr: str


VALUES = {
    "-w": "1s",
    "--timeout": "1s",
    "-i": "1s",
    "-s": "127.0.0.1",
    "-p": "40000",
    "--send": "x",
    "--repeat": "2",
    "--interval": "10ms",
    "--expect": "x",
    "--max-clients": "2",
    "--allow": "127.0.0.1/32",
    "--deny": "10.0.0.0/8",
    "--exec": "cat",
    "--count": "2",
    "--replies": "2",
    "--ttl": "2",
    "--interface": "lo",
    "--reply": "x",
    "--group": "239.1.2.3",
    "-c": "10",
    "--retries": "1",
    "--delay": "10ms",
    "--jitter": "5ms",
    "--rate": "1000",
    "--chunk": "10",
    "--chunk-delay": "5ms",  # not the default (10ms): a default given is not told apart from none
    "--reset-after": "100",
    "--close-after": "100",
    "--seed": "1",
    "--http": "/",
    "--status": "200",
    "--require": "1",
    "--banner-size": "10",
    "--drop": "0.5",
    "--pin": "sha256:" + "0" * 64,
    "--sni": "example.test",
    "--alpn": "h2",
    "--tls-min": "1.2",
    "--ciphers": "HIGH",
    "--quit-after": "1s",
    "--min-days": "1",
    "--proxy": "socks5://127.0.0.1:1080",
    "--proxy-auth": "user:secret",
    "--control": "json",
    "--frame": "line",
    "--max-frame": "1k",
    "--checksum": "crc32",
}
ARGUMENTS = {
    "tcp-connect": ["127.0.0.1:9"],
    "tcp-listen": ["127.0.0.1:0"],
    "udp-send": ["127.0.0.1:9"],
    "udp-listen": ["0"],
    "echo": ["127.0.0.1:0"],
    "time-server": ["127.0.0.1:0"],
    "forward": ["127.0.0.1:0", "127.0.0.1:9"],
    "portscan": ["127.0.0.1", "9"],
    "wait": ["127.0.0.1:9"],
    "ui": ["tcp-listen", "127.0.0.1:0"],
    "ping": ["127.0.0.1:9"],
}
IPV6 = {"127.0.0.1:9": "[::1]:9", "127.0.0.1:0": "[::1]:0", "127.0.0.1": "::1", "127.0.0.1/32": "::1/128"}


def argv_for(name: str, pair: tuple[str, ...], record: str, files: dict[str, str]) -> list[str]:
    """The command line for `name` with the options of `pair`, each with a value that fits the other."""
    ipv6 = "-6" in pair
    args: list[str] = [name]
    positional = list(ARGUMENTS[name])
    if "--interface" in pair and name == "udp-send":
        positional = ["[ff02::1234]:9" if ipv6 else "239.1.2.3:9"]
    for option in pair:
        if option == "MESSAGE":
            continue
        value = VALUES.get(option)
        if option == "--record":
            value = record
        elif option in files:
            value = files[option]
        elif option == "--send" and "--hex-input" in pair:
            value = "78"
        elif option == "--group" and ipv6:
            value = "ff02::1234"
        if value is None:
            args.append(option)
        else:
            args += [option, IPV6.get(value, value) if ipv6 else value]
    args += [IPV6.get(arg, arg) if ipv6 else arg for arg in positional]
    if "MESSAGE" in pair:
        args.append("6869" if "--hex-input" in pair else "hi")
    return args


def outcome(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> Outcome | None:
    """Run the command line in this process up to the network: None when it got there."""
    with monkeypatch.context() as patch:
        # The ui: stdin here is not a terminal (it would be refused); the app's run opens the sessions.
        patch.setattr("socktool.cli.ui._terminal", lambda: True)
        patch.setattr("socktool.ui.app.SocktoolApp.run", _reached)
        result = run_here(*argv)
    if result is None:
        return None
    text = result.stderr.decode(errors="replace")
    assert result.returncode == 2, f"{' '.join(argv)}: exit {result.returncode} before reaching the network:\n{text}"
    return Outcome(True, text)


def options_of(name: str) -> dict[str, list[str]]:
    """Each option of the command as the table names it, with all the names it goes by."""
    command = typer.main.get_command(build_app([name]))
    params = command.commands[name].params  # type: ignore[attr-defined]
    found: dict[str, list[str]] = {}
    for param in params:
        if param.param_type_name == "argument":
            if param.name == "message":
                found["MESSAGE"] = ["MESSAGE"]
            continue
        opts = list(param.opts)
        found[opts[0]] = opts
        for secondary in getattr(param, "secondary_opts", []):
            found[secondary] = [secondary]
    return found


def _same_param(a: str, b: str) -> bool:
    return {a, b} in ({"--view", "--raw"}, {"--reuse-addr", "--no-reuse-addr"}, {"--view", "--no-view"})


def expected(name: str, a: str, b: str) -> str:
    """REFUSED, or the test that shows the pair honoured ("" for independent options)."""
    needs = NEEDS.get(name, {})
    for one, other in ((a, b), (b, a)):
        if one in needs:
            groups = needs[one] if isinstance(needs[one], tuple) else (needs[one],)
            if any(other not in group for group in groups):
                return REFUSED
    pairs = PAIRS.get(name, {})
    listed = pairs.get(f"{a} {b}") or pairs.get(f"{b} {a}")
    if listed:
        return listed
    aspect_a, aspect_b = OPTIONS[name][a][0], OPTIONS[name][b][0]
    if aspect_a == aspect_b:
        return f"UNLISTED: {a} and {b} both act on {aspect_a}: list the pair in PAIRS[{name!r}]"
    return ""


def _test_names() -> set[str]:
    names = set()
    for path in TESTS.glob("test_*.py"):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                names.add(f"{path.name}::{node.name}")
    return names


def _exists(reference: str, names: set[str]) -> bool:
    return reference.split("[", 1)[0] in names


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Readable certificate files for the TLS options: a CA, and a leaf with its key in one file."""
    import trustme

    directory = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost")
    ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    leaf.private_key_and_cert_chain_pem.write_to_path(str(directory / "leaf.pem"))
    leaf.private_key_pem.write_to_path(str(directory / "key.pem"))
    ca_file = str(directory / "ca.pem")
    return {
        "--ca": ca_file,
        "--client-ca": ca_file,
        "--cert": str(directory / "leaf.pem"),
        "--key": str(directory / "key.pem"),
    }


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_option_is_in_the_table_with_a_test(name):
    live = options_of(name)
    table = OPTIONS.get(name, {})
    names = _test_names()
    problems = [
        f"{option}: not in OPTIONS[{name!r}]: give its aspect and test" for option in live if option not in table
    ]
    problems += [f"{option}: in the table, not an option of {name}" for option in table if option not in live]
    for option, (_aspect, test) in table.items():
        if not _exists(test, names):
            problems.append(f"{option}: no test {test}")
    for pair, test in PAIRS.get(name, {}).items():
        if test != REFUSED and not _exists(test, names):
            problems.append(f"{pair}: no test {test}")
        for option in pair.split():
            if option not in live:
                problems.append(f"{pair}: {option} is not an option of {name}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_pair_is_honoured_or_refused_never_ignored(name, monkeypatch, tmp_path, tls_files):
    live = options_of(name)
    problems = []
    for a, b in itertools.combinations(live, 2):
        if _same_param(a, b) or a not in OPTIONS.get(name, {}) or b not in OPTIONS.get(name, {}):
            continue
        want = expected(name, a, b)
        argv = argv_for(name, (a, b), str(tmp_path / "record"), tls_files)
        got = outcome(argv, monkeypatch)
        shown = " ".join(argv)
        if want.startswith("UNLISTED"):
            problems.append(want)
        elif want == REFUSED:
            if got is None:
                problems.append(f"{shown}: accepted; the table says refused")
                continue
            lines = [line for line in got.stderr.splitlines() if line.strip()]
            if "--debug" not in (a, b) and len(lines) != 1:
                problems.append(f"{shown}: refused with {len(lines)} lines:\n{got.stderr}")
            last = lines[-1] if lines else ""
            named = [option for option in (a, b) if any(alias in last for alias in live[option])]
            if not last.startswith("socktool: error: ") or not named:
                problems.append(f"{shown}: the refusal does not name the option: {last}")
        elif got is not None:
            problems.append(f"{shown}: refused, but the table says {want or 'honoured (independent)'}:\n{got.stderr}")
    assert not problems, f"{len(problems)} pair(s) of {name} disagree with the table:\n" + "\n".join(problems)
