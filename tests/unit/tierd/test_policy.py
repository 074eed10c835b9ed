from tierd.policy import WorkloadView, limit_moves, node_budget_excess, node_budget_room, pmem_limit_pages, plan

MIB = 1 << 20
BASE = {"priority": 0, "direction": "both", "pmem_max_percent": None, "dram_min_percent": None,
        "pmem_max_bytes": None, "dram_min_bytes": None}


def policy(**kw):
    result = dict(BASE)
    result.update(kw)
    return result


def view(name, pol, dram_heats=(), pmem_heats=()):
    """A workload whose DRAM/PMEM pages have the given heats; keys name the page and its node."""
    promote = sorted(((h, (name, "pmem", i)) for i, h in enumerate(pmem_heats)), key=lambda x: -x[0])
    demote = sorted(((h, (name, "dram", i)) for i, h in enumerate(dram_heats)), key=lambda x: x[0])
    return WorkloadView(name, pol, len(dram_heats) + len(pmem_heats), len(dram_heats), len(pmem_heats),
                        promote, demote)


def test_pmem_limit_from_percent_rounds_down():
    assert pmem_limit_pages(policy(pmem_max_percent=30), 1000) == 300
    assert pmem_limit_pages(policy(pmem_max_percent=30), 999) == 299  # 299.7 → 299, never above 30 %


def test_dram_min_percent_rounds_up_the_dram_share():
    assert pmem_limit_pages(policy(dram_min_percent=70), 999) == 299  # 699.3 DRAM pages → 700


def test_tightest_limit_wins_and_bytes_are_pages():
    pol = policy(pmem_max_percent=50, pmem_max_bytes=1 * MIB, dram_min_bytes=2 * MIB)
    assert pmem_limit_pages(pol, 1000) == 256  # 1 MiB = 256 pages < 500 and < 1000 - 512
    assert pmem_limit_pages(policy(dram_min_bytes=8 * MIB), 1000) == 0  # more than resident: all on DRAM


def test_no_limit_without_quota_keys():
    assert pmem_limit_pages(policy(), 1000) is None


def test_over_quota_promotes_hottest_first_even_if_not_hot():
    # 10 pages all on PMEM, none hot; at most 30 % may stay there → 7 promoted, the hottest 7.
    heats = [0.0, 0.05, 0.2, 0.1, 0.0, 0.3, 0.01, 0.02, 0.4, 0.03]
    decision = plan([view("vm", policy(pmem_max_percent=30), pmem_heats=heats)], 0.6, 0.1)["vm"]
    assert decision.pmem_limit == 3
    assert len(decision.promote) == 7
    promoted = sorted(key[2] for key, _pages in decision.promote)
    assert promoted == [1, 2, 3, 5, 7, 8, 9]  # the three coldest (0.0, 0.0, 0.01) stay
    assert decision.demote == []


def test_hot_pages_promoted_cold_ones_demoted_with_hysteresis_gap():
    decision = plan([view("vm", policy(), dram_heats=[0.05, 0.5, 0.9, 0.1], pmem_heats=[0.7, 0.59, 0.95])],
                    0.6, 0.1)["vm"]
    assert sorted(k[2] for k, _pages in decision.promote) == [0, 2]  # 0.59 is below hot_threshold
    assert sorted(k[2] for k, _pages in decision.demote) == [0, 3]  # 0.5 is between thresholds: stays


def test_direction_limits_moves():
    heats = dict(dram_heats=[0.0, 0.0], pmem_heats=[0.9])
    promote_only = plan([view("a", policy(direction="promote"), **heats)], 0.6, 0.1)["a"]
    assert len(promote_only.promote) == 1 and promote_only.demote == []
    demote_only = plan([view("a", policy(direction="demote"), **heats)], 0.6, 0.1)["a"]
    assert demote_only.promote == [] and len(demote_only.demote) == 2


def test_demotion_never_breaks_the_pmem_limit():
    # 10 pages on DRAM, all cold; pmem_max_percent 30 → only 3 may go to PMEM.
    decision = plan([view("vm", policy(pmem_max_percent=30), dram_heats=[0.0] * 10)], 0.6, 0.1)["vm"]
    assert len(decision.demote) == 3 and decision.promote == []


def test_budget_goes_to_mandatory_dram_first_then_by_priority():
    # Budget 10 pages. gold (prio 10) needs 4 mandatory DRAM pages (pmem_max 60 % of 10) and wants 6 hot;
    # bronze (prio 1) needs 5 mandatory (dram_min 50 %) and wants 10 hot.
    gold = view("gold", policy(priority=10, pmem_max_percent=60), pmem_heats=[0.9] * 6 + [0.0] * 4)
    bronze = view("bronze", policy(priority=1, dram_min_percent=50), pmem_heats=[0.9] * 10)
    decisions = plan([bronze, gold], 0.6, 0.1, budget_pages=10)
    # mandatory: gold 4, bronze 5 (total 9); the one spare page goes to gold (higher priority).
    assert decisions["gold"].dram_granted == 5 and len(decisions["gold"].promote) == 5
    assert decisions["bronze"].dram_granted == 5 and len(decisions["bronze"].promote) == 5


def test_budget_shrink_demotes_coldest_of_lower_priority():
    gold = view("gold", policy(priority=10), pmem_heats=[0.9] * 4)
    bronze = view("bronze", policy(priority=1), dram_heats=[0.5, 0.2, 0.4, 0.3])
    decisions = plan([gold, bronze], 0.6, 0.1, budget_pages=4)
    assert len(decisions["gold"].promote) == 4
    assert decisions["bronze"].dram_granted == 0
    # not cold by threshold, but over budget: all four go, coldest first
    assert [k[2] for k, _pages in decisions["bronze"].demote] == [1, 3, 2, 0]


def test_promote_only_workload_is_not_demoted_by_budget():
    bronze = view("bronze", policy(priority=1, direction="promote"), dram_heats=[0.5, 0.2])
    gold = view("gold", policy(priority=10), pmem_heats=[0.9, 0.9])
    decisions = plan([gold, bronze], 0.6, 0.1, budget_pages=2)
    assert decisions["bronze"].demote == []
    assert len(decisions["gold"].promote) == 2


def test_free_dram_caps_promotions_in_priority_order():
    gold = view("gold", policy(priority=5), pmem_heats=[0.9] * 3)
    bronze = view("bronze", policy(priority=1), pmem_heats=[0.9] * 3)
    decisions = plan([bronze, gold], 0.6, 0.1, free_dram_pages=4)
    assert len(decisions["gold"].promote) == 3
    assert len(decisions["bronze"].promote) == 1


def test_residency_is_honoured_by_leaving_pages_out_of_candidates():
    # The agent omits pages moved recently; a forced promotion can then only take what is left.
    v = WorkloadView("vm", policy(pmem_max_percent=0), 4, 0, 4, [(0.0, ("vm", "pmem", 0))], [])
    assert len(plan([v], 0.6, 0.1)["vm"].promote) == 1


def test_huge_page_blocks_overshoot_promotion_never_demotion_limits():
    # Blocks of 512 pages (a THP moves whole). 2048 pages on PMEM, limit 30 % → 1434 must go to DRAM.
    promote = [(0.0, ("vm", "pmem", i), 512) for i in range(4)]
    v = WorkloadView("vm", policy(pmem_max_percent=30), 2048, 0, 2048, promote, [])
    decision = plan([v], 0.6, 0.1, block_pages=512)["vm"]
    assert [n for _k, n in decision.promote] == [512, 512, 512]  # 1536: the smallest whole-block cover of 1434
    # 2048 cold DRAM pages in blocks, limit 30 % of 2048 = 614 pages: one block fits, two would not.
    demote = [(0.0, ("vm", "dram", i), 512) for i in range(4)]
    v = WorkloadView("vm", policy(pmem_max_percent=30), 2048, 2048, 0, [], demote)
    assert [n for _k, n in plan([v], 0.6, 0.1, block_pages=512)["vm"].demote] == [512]


def test_an_extent_is_taken_in_part():
    # One extent of 1000 pages on PMEM, limit 30 % → 700 of it promoted, not all 1000.
    v = WorkloadView("vm", policy(pmem_max_percent=30), 1000, 0, 1000, [(0.2, ("vm", "pmem", 0), 1000)], [])
    assert plan([v], 0.6, 0.1)["vm"].promote == [(("vm", "pmem", 0), 700)]
    # 1000 cold pages on DRAM in two extents, 300 may go to PMEM: the coldest extent gives 300.
    demote = [(0.0, ("vm", "dram", 0), 600), (0.05, ("vm", "dram", 1), 400)]
    v = WorkloadView("vm", policy(pmem_max_percent=30), 1000, 1000, 0, [], demote)
    assert plan([v], 0.6, 0.1)["vm"].demote == [(("vm", "dram", 0), 300)]
    # with 256-page blocks, 300 pages round down to 256: a demotion never overshoots the limit
    assert plan([v], 0.6, 0.1, block_pages=256)["vm"].demote == [(("vm", "dram", 0), 256)]


def _pages(moves):
    return sum(n for _key, n in moves)


def test_move_budget_spends_on_quota_demotions_then_cold_then_quota_then_hot_promotions():
    # "quota" must give up DRAM for a 4-page DRAM budget share; "free" has cold pages and hot PMEM pages.
    views = [view("quota", policy(priority=1, dram_min_bytes=0), dram_heats=[0.5] * 10),
             view("free", policy(priority=5, pmem_max_percent=50),
                  dram_heats=[0.0] * 4, pmem_heats=[0.9, 0.8, 0.7, 0.95, 0.2, 0.2])]
    decisions = plan(views, 0.6, 0.1, budget_pages=10, free_dram_pages=100)
    quota, free = decisions["quota"], decisions["free"]
    assert (_pages(quota.demote), quota.forced_demote) == (5, 5)  # 10 on DRAM, 5 granted of the budget
    assert (_pages(free.demote), free.forced_demote) == (3, 0)  # cold, as far as its PMEM limit has room
    assert (_pages(free.promote), free.forced_promote) == (4, 1)  # 6 on PMEM, limit 5; 4 hot
    # The 4 pages of budget go to quota's forced demotions although free has the higher priority.
    assert limit_moves(decisions, views, 4) == (5 + 3 + 4) - 4
    assert (_pages(quota.demote), _pages(free.demote), _pages(free.promote)) == (4, 0, 0)
    # Free's 3 cold demotions wait, so it may promote only 1 (its DRAM grant counted on them).
    assert (quota.deferred_demote, free.deferred_demote, free.deferred_promote) == (1, 3, 4)
    decisions = plan(views, 0.6, 0.1, budget_pages=10, free_dram_pages=100)
    assert limit_moves(decisions, views, 10) == 2
    assert (_pages(decisions["quota"].demote), _pages(decisions["free"].demote)) == (5, 3)
    assert _pages(decisions["free"].promote) == 2  # the 2 hottest of its 4


def test_move_budget_order_after_quota_demotions():
    views = [view("a", policy(priority=1, pmem_max_percent=50), dram_heats=[0.0] * 2,
                  pmem_heats=[0.9, 0.8, 0.7, 0.2, 0.2, 0.2])]
    decisions = plan(views, 0.6, 0.1)
    # 8 pages, at most 4 on PMEM: 2 promotions forced, 3 hot, and room for 1 cold demotion.
    assert (_pages(decisions["a"].demote), _pages(decisions["a"].promote), decisions["a"].forced_promote) == (1, 3, 2)
    keys = [key for key, _n in decisions["a"].promote]
    assert limit_moves(decisions, views, 3) == 1
    assert _pages(decisions["a"].demote) == 1  # demotions before promotions, as they run
    assert [key for key, _n in decisions["a"].promote] == keys[:2]  # the hottest two: the quota's share


def test_no_move_budget_changes_nothing():
    views = [view("a", policy(), dram_heats=[0.0] * 3, pmem_heats=[0.9])]
    decisions = plan(views, 0.6, 0.1)
    before = (list(decisions["a"].demote), list(decisions["a"].promote))
    assert limit_moves(decisions, views, None) == 0
    assert limit_moves(decisions, views, 100) == 0
    assert (decisions["a"].demote, decisions["a"].promote) == before


def test_a_node_budget_is_kept_by_higher_priority_first():
    usage = {"vm_gold": {0: 300, 1: 500}, "vm_bronze": {1: 400}, "vm_silver": {1: 200}}
    priorities = {"vm_gold": 20, "vm_silver": 10, "vm_bronze": 0}
    # node 1: gold keeps 500, silver 200, bronze the 100 left of 800; node 0 has no budget.
    assert node_budget_excess(usage, {1: 800}, priorities) == {"vm_bronze": {1: 300}}
    # a tight budget takes from silver too; gold keeps what fits
    assert node_budget_excess(usage, {1: 450}, priorities) == {
        "vm_gold": {1: 50}, "vm_silver": {1: 200}, "vm_bronze": {1: 400}}
    assert node_budget_excess(usage, {0: 300, 1: 1100}, priorities) == {}


def test_equal_priorities_share_a_node_budget_by_name():
    usage = {"b": {0: 10}, "a": {0: 10}}
    assert node_budget_excess(usage, {0: 15}, {"a": 0, "b": 0}) == {"b": {0: 5}}


def test_node_budget_room_is_what_is_left_never_negative():
    usage = {"a": {0: 10, 1: 700}, "b": {1: 400}}
    assert node_budget_room(usage, {0: 100, 1: 1000}) == {0: 90, 1: 0}
    assert node_budget_room({}, {3: 5}) == {3: 5}


def test_a_higher_prioritys_promotions_displace_a_lower_ones_pages_on_a_budgeted_node():
    usage = {"gold": {1: 100}, "bronze": {1: 400}}
    priorities = {"gold": 10, "bronze": 0}
    # gold's 300 hot pages on PMEM are to come to node 1: bronze gives up that much of the 500
    assert node_budget_excess(usage, {1: 500}, priorities, {"gold": {1: 300}}) == {"bronze": {1: 300}}
    # bronze's own promotions never push gold out
    assert node_budget_excess(usage, {1: 500}, priorities, {"bronze": {1: 300}}) == {}
