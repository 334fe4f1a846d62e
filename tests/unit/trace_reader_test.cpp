// Streaming readers of public LLM request traces (models/workload/trace_reader.hpp): each
// format's fields, exact wall-clock time, the window and its early stop, the filters, the errors
// (file, line, field), the shipped Azure and Mooncake files, and the summary's prefix hits.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "models/workload/dataset.hpp"
#include "models/workload/trace_reader.hpp"

namespace moesim::test {
namespace {

namespace fs = std::filesystem;
using Reader = ::moesim::TraceReader;  // the fixture below takes the name, for the suite's name

/// A fresh folder per test, removed after it.
class TraceReader : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           ("moesim-trace-" + std::to_string(::getpid()) + "-" + info->test_suite_name() + "-" + info->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  fs::path write(const std::string& name, const std::string& text) const {
    const auto p = dir_ / name;
    std::ofstream(p, std::ios::binary) << text;
    return p;
  }
  fs::path dir_;
};

std::vector<TraceRecord> read_all(const fs::path& file, const std::string& format, const TraceFilter& filter = {},
                                  int block = 16) {
  Reader reader(file, format, filter, block);
  std::vector<TraceRecord> out;
  while (auto r = reader.next()) out.push_back(std::move(*r));
  return out;
}

/// The one issue `f` throws; a failed expectation when it throws none.
InputIssue issue_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const InputError& e) {
    EXPECT_EQ(e.issues().size(), 1u);
    return e.issues().front();
  }
  ADD_FAILURE() << "no InputError";
  return {};
}

InputIssue read_error(const fs::path& file, const std::string& format, const TraceFilter& filter = {}) {
  return issue_of([&] { (void)read_all(file, format, filter); });
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// ---- formats -----------------------------------------------------------------------------------

TEST_F(TraceReader, azure_timestamps_become_seconds_from_the_first_record) {
  const auto f = write("a.csv",
                       "TIMESTAMP,ContextTokens,GeneratedTokens\n"
                       "2023-11-16 18:15:46.6805900,374,44\n"
                       "2023-11-16 18:15:50.9951690,396,109\n"
                       "2023-11-16 18:16:00.0000001,879,55\n");
  Reader reader(f, "azure");
  EXPECT_EQ(reader.hash_block_tokens(), 0);
  std::vector<TraceRecord> rs;
  while (auto r = reader.next()) rs.push_back(*r);
  ASSERT_EQ(rs.size(), 3u);
  EXPECT_EQ(rs[0].time_s, 0.0);
  EXPECT_NEAR(rs[1].time_s, 4.314579, 1e-9);
  EXPECT_NEAR(rs[2].time_s, 13.3194101, 1e-9);
  EXPECT_EQ(rs[0].input_tokens, 374);
  EXPECT_EQ(rs[0].output_tokens, 44);
  EXPECT_EQ(rs[2].input_tokens, 879);
  EXPECT_EQ(rs[2].output_tokens, 55);
  EXPECT_EQ(rs[1].line, 3);
  EXPECT_TRUE(rs[1].group.empty());
  EXPECT_TRUE(rs[1].hash_ids.empty());
  // 2023-11-16 18:15:46 UTC is Unix time 1700158546.
  EXPECT_NEAR(rs[0].recorded_s, 1700158546.68059, 1e-6);
  EXPECT_EQ(reader.counters().kept, 3);
  EXPECT_EQ(reader.counters().lines, 4);
}

TEST_F(TraceReader, azure_time_is_exact_across_a_day_boundary_a_leap_day_and_a_year_end) {
  const auto f = write("a.csv",
                       "TIMESTAMP,ContextTokens,GeneratedTokens\n"
                       "2024-02-28 23:59:59.9999999,1,1\n"
                       "2024-02-29 00:00:00.0000000,1,1\n"
                       "2024-03-01 00:00:00.5,1,1\n"
                       "2024-12-31 23:59:59,1,1\n"
                       "2025-01-01 00:00:00,1,1\n");
  const auto rs = read_all(f, "azure");
  ASSERT_EQ(rs.size(), 5u);
  EXPECT_EQ(rs[1].recorded_s, 1709164800.0);  // 2024-02-29 00:00:00 UTC
  EXPECT_EQ(rs[4].recorded_s, 1735689600.0);  // 2025-01-01 00:00:00 UTC
  EXPECT_NEAR(rs[1].time_s, 1e-7, 1e-12);
  EXPECT_NEAR(rs[2].time_s, 86400.5 + 1e-7, 1e-9);  // the leap day has 86400 s
  EXPECT_NEAR(rs[3].time_s, 1735689599.0 - 1709164800.0 + 1e-7, 1e-8);
  EXPECT_NEAR(rs[4].time_s - rs[3].time_s, 1.0, 1e-9);
}

TEST_F(TraceReader, azure_reads_0_to_9_fractional_digits_crlf_and_a_utc_offset) {
  const auto f = write("a.csv",
                       "TIMESTAMP,ContextTokens,GeneratedTokens\r\n"
                       "2023-11-16 18:15:46,10,1\r\n"
                       "2023-11-16 18:15:46.5,10,1\r\n"
                       "2023-11-16 18:15:47.123456789,10,1\r\n"
                       "2023-11-16T18:15:48.25Z,10,1\r\n"
                       "2023-11-16 19:15:49.000001+01:00,10,1\r\n"   // 18:15:49.000001 UTC
                       "2023-11-16 17:15:50.0099-0100,10,1\r\n");    // 18:15:50.0099 UTC
  const auto rs = read_all(f, "azure");
  ASSERT_EQ(rs.size(), 6u);
  EXPECT_EQ(rs[0].time_s, 0.0);
  EXPECT_NEAR(rs[1].time_s, 0.5, 1e-12);
  EXPECT_NEAR(rs[2].time_s, 1.123456789, 1e-12);
  EXPECT_NEAR(rs[3].time_s, 2.25, 1e-12);
  EXPECT_NEAR(rs[4].time_s, 3.000001, 1e-12);
  EXPECT_NEAR(rs[5].time_s, 4.0099, 1e-12);
  EXPECT_EQ(rs[5].output_tokens, 1);  // no '\r' left in the last field
}

TEST_F(TraceReader, mooncake_reads_ms_timestamps_hash_ids_and_ignores_unknown_keys) {
  const auto f = write("m.jsonl",
                       "{\"timestamp\": 0, \"input_length\": 6758, \"output_length\": 500, \"hash_ids\": "
                       "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]}\n"
                       "{\"timestamp\": 1500.5, \"input_length\": 512, \"output_length\": 1, \"hash_ids\": [0], "
                       "\"note\": {\"added\": \"by the publisher\"}}\n");
  Reader reader(f, "mooncake");
  EXPECT_EQ(reader.hash_block_tokens(), 512);
  const auto a = reader.next();
  const auto b = reader.next();
  ASSERT_TRUE(a && b);
  EXPECT_FALSE(reader.next());
  EXPECT_EQ(a->input_tokens, 6758);
  EXPECT_EQ(a->output_tokens, 500);
  EXPECT_EQ(a->hash_ids.size(), 14u);
  EXPECT_EQ(a->hash_ids.back(), 13);
  EXPECT_NEAR(b->time_s, 1.5005, 1e-12);
  EXPECT_EQ(b->hash_ids, std::vector<std::int64_t>{0});
  EXPECT_EQ(b->line, 2);
}

TEST_F(TraceReader, burstgpt_reads_model_as_group_and_drops_failed_requests_unless_kept) {
  const auto f = write("b.csv",
                       "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
                       "5,ChatGPT,472,18,490,Conversation log\n"
                       "45,\"GPT-4\",1087,0,1087,API log\n"    // failed
                       "46,ChatGPT,0,0,0,Conversation log\n"     // failed, no request tokens either
                       "47.5,\"GPT-4\",200,300,500,\"API log\"\n"
                       "48,\"Chat, \"\"quoted\"\"\",10,20,30,API log\n");
  const auto kept = read_all(f, "burstgpt");
  ASSERT_EQ(kept.size(), 3u);
  EXPECT_EQ(kept[0].group, "ChatGPT");
  EXPECT_EQ(kept[0].input_tokens, 472);
  EXPECT_EQ(kept[0].output_tokens, 18);
  EXPECT_FALSE(kept[0].failed);
  EXPECT_EQ(kept[1].group, "GPT-4");
  EXPECT_NEAR(kept[1].time_s, 42.5, 1e-12);  // from the first record, at 5 s
  EXPECT_EQ(kept[1].recorded_s, 47.5);
  EXPECT_EQ(kept[2].group, "Chat, \"quoted\"");

  TraceFilter with_failed;
  with_failed.keep_failed = true;
  const auto all = read_all(f, "burstgpt", with_failed);
  ASSERT_EQ(all.size(), 5u);
  EXPECT_TRUE(all[1].failed);
  EXPECT_EQ(all[1].input_tokens, 1087);
  EXPECT_EQ(all[1].output_tokens, 0);
  EXPECT_TRUE(all[2].failed);
  EXPECT_EQ(all[2].input_tokens, 0);

  TraceFilter gpt4;
  gpt4.groups = {"GPT-4"};
  Reader reader(f, "burstgpt", gpt4);
  std::vector<TraceRecord> rs;
  while (auto r = reader.next()) rs.push_back(*r);
  ASSERT_EQ(rs.size(), 1u);
  EXPECT_EQ(rs[0].line, 5);
  EXPECT_EQ(reader.counters().records, 5);
  EXPECT_EQ(reader.counters().dropped_failed, 2);
  EXPECT_EQ(reader.counters().dropped_filtered, 2);
  EXPECT_EQ(reader.counters().kept, 1);
}

TEST_F(TraceReader, bailian_reads_sessions_type_turn_and_16_token_blocks) {
  const auto f = write("q.jsonl",
                       "{\"chat_id\": 7, \"parent_chat_id\": -1, \"timestamp\": 0.25, \"input_length\": 33, "
                       "\"output_length\": 12, \"type\": \"text\", \"turn\": 1, \"hash_ids\": [101, 102, 103]}\n"
                       "{\"chat_id\": 8, \"parent_chat_id\": 7, \"timestamp\": 3.5, \"input_length\": 48, "
                       "\"output_length\": 5, \"type\": \"image\", \"turn\": 2, \"hash_ids\": [101, 102, 104], "
                       "\"extra\": [1, 2]}\n");
  Reader reader(f, "bailian");
  EXPECT_EQ(reader.hash_block_tokens(), 16);
  const auto a = reader.next();
  const auto b = reader.next();
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->chat_id, 7);
  EXPECT_EQ(a->parent_chat_id, -1);
  EXPECT_EQ(a->group, "text");
  EXPECT_EQ(a->turn, 1);
  EXPECT_EQ(a->time_s, 0.0);
  EXPECT_EQ(a->recorded_s, 0.25);
  EXPECT_EQ(b->parent_chat_id, 7);
  EXPECT_EQ(b->group, "image");
  EXPECT_EQ(b->turn, 2);
  EXPECT_EQ(b->time_s, 3.25);
  EXPECT_EQ(b->hash_ids, (std::vector<std::int64_t>{101, 102, 104}));
}

TEST_F(TraceReader, splitwise_reads_arrivals_sizes_and_application_id_as_group) {
  const auto f = write("s.csv",
                       "request_id,request_type,application_id,arrival_timestamp,batch_size,prompt_size,token_size\n"
                       "0,2,0,0.0,1,1020,129\n"
                       "1,2,\"code\",0.104,1,22,7\n");
  const auto rs = read_all(f, "splitwise");
  ASSERT_EQ(rs.size(), 2u);
  EXPECT_EQ(rs[0].group, "0");
  EXPECT_EQ(rs[0].input_tokens, 1020);
  EXPECT_EQ(rs[0].output_tokens, 129);
  EXPECT_EQ(rs[1].group, "code");
  EXPECT_EQ(rs[1].time_s, 0.104);
}

TEST_F(TraceReader, moesim_reads_optional_domain_sessions_and_hash_ids_of_the_callers_block) {
  const auto f = write("t.jsonl",
                       "{\"arrival_s\": 1, \"prompt_tokens\": 64, \"output_tokens\": 8, \"domain\": \"cooking\", "
                       "\"hash_ids\": [5, 6], \"chat_id\": 3, \"prompt\": \"ignored\"}\n"
                       "{\"arrival_s\": 2, \"prompt_tokens\": 10, \"output_tokens\": 2, \"chat_id\": 4, "
                       "\"parent_chat_id\": 3, \"turn\": 2}\n");
  Reader reader(f, "moesim", {}, 32);
  EXPECT_EQ(reader.hash_block_tokens(), 32);
  const auto a = reader.next();
  const auto b = reader.next();
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->group, "cooking");
  EXPECT_EQ(a->hash_ids, (std::vector<std::int64_t>{5, 6}));
  EXPECT_EQ(a->chat_id, 3);
  EXPECT_EQ(a->parent_chat_id, -1);
  EXPECT_EQ(b->group, "");
  EXPECT_TRUE(b->hash_ids.empty());
  EXPECT_EQ(b->parent_chat_id, 3);
  EXPECT_EQ(b->turn, 2);
  EXPECT_EQ(b->time_s, 1.0);
}

TEST_F(TraceReader, blank_lines_and_a_final_line_without_newline_are_read) {
  const auto f = write("m.jsonl",
                       "\n{\"timestamp\": 0, \"input_length\": 5, \"output_length\": 1, \"hash_ids\": [1]}\n"
                       "  \r\n\n{\"timestamp\": 10, \"input_length\": 5, \"output_length\": 1, \"hash_ids\": [1]}");
  const auto rs = read_all(f, "mooncake");
  ASSERT_EQ(rs.size(), 2u);
  EXPECT_EQ(rs[0].line, 2);
  EXPECT_EQ(rs[1].line, 5);
  EXPECT_EQ(read_all(write("h.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n\n"), "azure").size(), 0u);
}

// ---- window and filters ------------------------------------------------------------------------

TEST_F(TraceReader, window_skips_records_before_its_start_and_stops_reading_at_its_end) {
  // The line after the first record past the window is not a record: it is never read.
  const auto f = write("b.csv",
                       "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
                       "100,ChatGPT,1,1,2,API log\n"
                       "100.5,ChatGPT,2,1,3,API log\n"
                       "101,ChatGPT,3,1,4,API log\n"
                       "102.9,ChatGPT,4,1,5,API log\n"
                       "103,ChatGPT,5,1,6,API log\n"
                       "this line is garbage\n");
  TraceFilter window;
  window.start_s = 1;  // from the first record, at 100 s
  window.duration_s = 2;
  Reader reader(f, "burstgpt", window);
  std::vector<int> inputs;
  while (auto r = reader.next()) inputs.push_back(r->input_tokens);
  EXPECT_EQ(inputs, (std::vector<int>{3, 4}));
  EXPECT_FALSE(reader.next());
  const auto& c = reader.counters();
  EXPECT_EQ(c.skipped_before_window, 2);
  EXPECT_EQ(c.kept, 2);
  EXPECT_EQ(c.records, 4);
  EXPECT_TRUE(c.reached_window_end);
  EXPECT_EQ(c.lines, 6);  // header and five records; the garbage line is not read

  TraceFilter open_ended;
  open_ended.start_s = 1;
  EXPECT_EQ(read_error(f, "burstgpt", open_ended).line, 7);  // without an end, the garbage is read
}

TEST_F(TraceReader, max_requests_stops_after_that_many_kept_records) {
  const auto f = write("m.jsonl",
                       "{\"timestamp\": 0, \"input_length\": 5, \"output_length\": 1, \"hash_ids\": [1]}\n"
                       "{\"timestamp\": 1, \"input_length\": 6, \"output_length\": 1, \"hash_ids\": [1]}\n"
                       "{\"timestamp\": 2, \"input_length\": 7, \"output_length\": 1, \"hash_ids\": [1]}\n"
                       "not json\n");
  TraceFilter two;
  two.start_s = 0.001;  // skips the first
  two.max_requests = 2;
  Reader reader(f, "mooncake", two);
  std::vector<int> inputs;
  while (auto r = reader.next()) inputs.push_back(r->input_tokens);
  EXPECT_EQ(inputs, (std::vector<int>{6, 7}));
  EXPECT_EQ(reader.counters().lines, 3);
  EXPECT_FALSE(reader.counters().reached_window_end);
}

TEST_F(TraceReader, a_header_without_records_in_the_window_reads_as_no_records) {
  const auto f = write("a.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46,3,4\n");
  TraceFilter late;
  late.start_s = 10;
  EXPECT_TRUE(read_all(f, "azure", late).empty());
}

// ---- errors ------------------------------------------------------------------------------------

TEST_F(TraceReader, unknown_format_lists_the_allowed_formats) {
  const auto f = write("a.csv", "");
  const auto i = issue_of([&] { Reader r(f, "azure2023"); });
  EXPECT_EQ(i.field, "format");
  EXPECT_EQ(i.message, "unknown trace format \"azure2023\"; known: azure, mooncake, burstgpt, bailian, splitwise, moesim");
  EXPECT_EQ(trace_formats(), (std::vector<std::string>{"azure", "mooncake", "burstgpt", "bailian", "splitwise", "moesim"}));
}

TEST_F(TraceReader, bad_header_names_the_column_and_lists_the_expected_header) {
  const std::string expected = "expected the header `Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type`";
  const auto wrong = read_error(write("w.csv", "Timestamp,Modle,Request tokens,Response tokens,Total tokens,Log Type\n"), "burstgpt");
  EXPECT_EQ(wrong.line, 1);
  EXPECT_EQ(wrong.field, "Model");
  EXPECT_EQ(wrong.message, "column 2 is \"Modle\", not \"Model\"; " + expected);
  const auto missing = read_error(write("m.csv", "Timestamp,Model,Request tokens,Response tokens\n"), "burstgpt");
  EXPECT_EQ(missing.field, "Total tokens");
  EXPECT_EQ(missing.message, "column 5 is missing; " + expected);
  const auto extra =
      read_error(write("x.csv", "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type,Session ID\n"), "burstgpt");
  EXPECT_EQ(extra.field, "Session ID");
  EXPECT_EQ(extra.message, "extra column 7 \"Session ID\"; " + expected);
  const auto empty = read_error(write("e.csv", ""), "azure");
  EXPECT_EQ(empty.message, "empty file; expected the header `TIMESTAMP,ContextTokens,GeneratedTokens`");
  // A byte order mark before the header is not part of the first column's name.
  EXPECT_EQ(read_all(write("bom.csv", "\xEF\xBB\xBFTIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46,3,4\n"), "azure").size(), 1u);
}

TEST_F(TraceReader, non_numeric_values_name_file_line_and_column) {
  const auto f = write("a.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46,3,4\n2023-11-16 18:15:47,abc,4\n");
  const auto i = read_error(f, "azure");
  EXPECT_EQ(i.file, f.string());
  EXPECT_EQ(i.line, 3);
  EXPECT_EQ(i.field, "ContextTokens");
  EXPECT_EQ(i.message, "not a number (got \"abc\")");
  EXPECT_EQ(InputError::format(i), f.string() + ":3: ContextTokens: not a number (got \"abc\")");

  const auto frac = read_error(write("b.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46,3.5,4\n"), "azure");
  EXPECT_EQ(frac.message, "must be an integer (got 3.5)");
  const auto time = read_error(write("c.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-02-29 00:00:00,3,4\n"), "azure");
  EXPECT_EQ(time.field, "TIMESTAMP");
  EXPECT_EQ(time.message, "no such date (got \"2023-02-29 00:00:00\")");
  const auto digits = read_error(write("d.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.1234567890,3,4\n"), "azure");
  EXPECT_TRUE(contains(digits.message, "more than 9 fractional digits")) << digits.message;
  const auto shape = read_error(write("e.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n11/16/2023 18:15,3,4\n"), "azure");
  EXPECT_TRUE(contains(shape.message, "expected a time YYYY-MM-DD HH:MM:SS")) << shape.message;

  const std::string burst = "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n";
  const auto nan = read_error(write("f.csv", burst + "nan,ChatGPT,1,1,2,API log\n"), "burstgpt");
  EXPECT_EQ(nan.field, "Timestamp");
  EXPECT_EQ(nan.message, "must be a finite number (got nan)");
  const auto big = read_error(write("g.csv", burst + "1,ChatGPT,3000000000,1,2,API log\n"), "burstgpt");
  EXPECT_EQ(big.field, "Request tokens");
  EXPECT_EQ(big.message, "beyond the int range (got 3000000000)");
  const auto cols = read_error(write("h.csv", burst + "1,ChatGPT,3\n"), "burstgpt");
  EXPECT_EQ(cols.field, "Response tokens");
  EXPECT_EQ(cols.message, "missing (the line has 3 of the header's 6 columns)");
  const auto more = read_error(write("i.csv", burst + "1,ChatGPT,3,4,7,API log,x\n"), "burstgpt");
  EXPECT_EQ(more.message, "has 7 columns, but the header has 6");
  const auto quote = read_error(write("j.csv", burst + "1,\"ChatGPT,3,4,7,API log\n"), "burstgpt");
  EXPECT_TRUE(contains(quote.message, "not closed on this line")) << quote.message;
}

TEST_F(TraceReader, negative_tokens_and_zero_output_are_rejected) {
  const auto neg = read_error(write("a.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46,3,-4\n"), "azure");
  EXPECT_EQ(neg.field, "GeneratedTokens");
  EXPECT_EQ(neg.message, "must not be negative (got -4)");
  const auto zero_in = read_error(write("b.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46,0,4\n"), "azure");
  EXPECT_EQ(zero_in.message, "input tokens must be >= 1 (got 0)");
  const auto zero_out = read_error(
      write("m.jsonl", "{\"timestamp\": 0, \"input_length\": 5, \"output_length\": 0, \"hash_ids\": [1]}\n"), "mooncake");
  EXPECT_EQ(zero_out.field, "output_length");
  EXPECT_EQ(zero_out.message, "output tokens must be >= 1 (got 0)");
  // burstgpt: no response is a failed request, but request tokens without a response are still checked.
  const auto burst = read_error(write("b2.csv",
                                      "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
                                      "1,ChatGPT,0,5,5,API log\n"),
                                "burstgpt");
  EXPECT_EQ(burst.field, "Request tokens");
  EXPECT_EQ(burst.message, "input tokens must be >= 1 (got 0)");
  const auto negative_time = read_error(write("t.jsonl", "{\"arrival_s\": -1, \"prompt_tokens\": 5, \"output_tokens\": 1}\n"), "moesim");
  EXPECT_EQ(negative_time.field, "arrival_s");
  EXPECT_EQ(negative_time.message, "must not be negative (got -1)");
}

TEST_F(TraceReader, decreasing_timestamp_names_both_values_and_lines) {
  const auto a = read_error(write("a.csv",
                                  "TIMESTAMP,ContextTokens,GeneratedTokens\n"
                                  "2023-11-16 18:15:46.5,3,4\n"
                                  "2023-11-16 18:15:46.4999999,3,4\n"),
                            "azure");
  EXPECT_EQ(a.line, 3);
  EXPECT_EQ(a.field, "TIMESTAMP");
  EXPECT_EQ(a.message,
            "timestamp 2023-11-16 18:15:46.4999999 is earlier than 2023-11-16 18:15:46.5 on line 2; a trace must be sorted by time");
  const auto m = read_error(write("m.jsonl",
                                  "{\"timestamp\": 10, \"input_length\": 5, \"output_length\": 1, \"hash_ids\": [1]}\n\n"
                                  "{\"timestamp\": 9.5, \"input_length\": 5, \"output_length\": 1, \"hash_ids\": [1]}\n"),
                            "mooncake");
  EXPECT_EQ(m.line, 3);
  EXPECT_EQ(m.field, "timestamp");
  EXPECT_EQ(m.message, "timestamp 9.5 is earlier than 10 on line 1; a trace must be sorted by time");
  // Equal timestamps are in order.
  EXPECT_EQ(read_all(write("e.jsonl",
                           "{\"timestamp\": 0, \"input_length\": 5, \"output_length\": 1, \"hash_ids\": [1]}\n"
                           "{\"timestamp\": 0, \"input_length\": 5, \"output_length\": 1, \"hash_ids\": [1]}\n"),
                     "mooncake")
                .size(),
            2u);
}

TEST_F(TraceReader, wrong_hash_id_count_names_the_expected_count) {
  const auto m = read_error(
      write("m.jsonl", "{\"timestamp\": 0, \"input_length\": 1025, \"output_length\": 1, \"hash_ids\": [1, 2]}\n"), "mooncake");
  EXPECT_EQ(m.line, 1);
  EXPECT_EQ(m.field, "hash_ids");
  EXPECT_EQ(m.message, "has 2 ids, but input_length 1025 needs ceil(1025 / 512) = 3 (one per 512-token block)");
  const auto q = read_error(write("q.jsonl",
                                  "{\"chat_id\": 1, \"parent_chat_id\": -1, \"timestamp\": 0, \"input_length\": 16, "
                                  "\"output_length\": 1, \"type\": \"text\", \"turn\": 1, \"hash_ids\": [1, 2]}\n"),
                            "bailian");
  EXPECT_EQ(q.message, "has 2 ids, but input_length 16 needs ceil(16 / 16) = 1 (one per 16-token block)");
  const auto bad = read_error(
      write("n.jsonl", "{\"timestamp\": 0, \"input_length\": 600, \"output_length\": 1, \"hash_ids\": [1, -2]}\n"), "mooncake");
  EXPECT_EQ(bad.message, "must be a list of non-negative integers (item 2 is -2)");
  const auto kind = read_error(
      write("o.jsonl", "{\"timestamp\": 0, \"input_length\": 600, \"output_length\": 1, \"hash_ids\": \"1,2\"}\n"), "mooncake");
  EXPECT_EQ(kind.message, "must be a list of non-negative integers (got \"1,2\")");
}

TEST_F(TraceReader, json_lines_name_missing_or_mistyped_keys_and_bound_the_line) {
  const auto missing = read_error(write("a.jsonl", "{\"timestamp\": 0, \"input_length\": 5, \"hash_ids\": [1]}\n"), "mooncake");
  EXPECT_EQ(missing.field, "output_length");
  EXPECT_EQ(missing.message, "missing");
  const auto type = read_error(write("b.jsonl",
                                     "{\"chat_id\": 1, \"parent_chat_id\": -1, \"timestamp\": 0, \"input_length\": 5, "
                                     "\"output_length\": 1, \"type\": 3, \"turn\": 1, \"hash_ids\": [1]}\n"),
                               "bailian");
  EXPECT_EQ(type.field, "type");
  EXPECT_EQ(type.message, "must be a string (got 3)");
  const auto str_num = read_error(write("c.jsonl", "{\"arrival_s\": \"1\", \"prompt_tokens\": 5, \"output_tokens\": 1}\n"), "moesim");
  EXPECT_EQ(str_num.message, "must be a number (got \"1\")");
  const auto frac = read_error(write("d.jsonl", "{\"arrival_s\": 1, \"prompt_tokens\": 5.5, \"output_tokens\": 1}\n"), "moesim");
  EXPECT_EQ(frac.field, "prompt_tokens");
  EXPECT_EQ(frac.message, "must be an integer (got 5.5)");
  const auto huge = read_error(write("e.jsonl", "{\"arrival_s\": 1e400, \"prompt_tokens\": 5, \"output_tokens\": 1}\n"), "moesim");
  EXPECT_TRUE(contains(huge.message, "not valid JSON")) << huge.message;
  const auto not_json = read_error(write("f.jsonl", "{\"arrival_s\": 1,\n"), "moesim");
  EXPECT_EQ(not_json.message, "not valid JSON");
  const auto list = read_error(write("g.jsonl", "[1, 2]\n"), "moesim");
  EXPECT_EQ(list.message, "expected a JSON object (got a list)");
  const auto deep = read_error(write("h.jsonl", std::string(100, '[') + std::string(100, ']') + "\n"), "moesim");
  EXPECT_EQ(deep.message, "nests objects or lists deeper than " + std::to_string(kMaxDatasetLineDepth) + " levels");
  const auto parent = read_error(write("i.jsonl", "{\"arrival_s\": 1, \"prompt_tokens\": 5, \"output_tokens\": 1, \"parent_chat_id\": -2}\n"), "moesim");
  EXPECT_EQ(parent.field, "parent_chat_id");
  const auto long_line = read_error(write("j.jsonl", "{\"arrival_s\": 1, \"x\": \"" + std::string(kMaxDatasetLineBytes, 'x') + "\"}\n"), "moesim");
  EXPECT_EQ(long_line.line, 1);
  EXPECT_TRUE(contains(long_line.message, "longer than " + std::to_string(kMaxDatasetLineBytes) + " bytes")) << long_line.message;
}

TEST_F(TraceReader, a_missing_file_bad_filter_or_group_filter_without_groups_is_an_error) {
  EXPECT_TRUE(contains(issue_of([&] { Reader r(dir_ / "none.csv", "azure"); }).message, "no such file"));
  const auto f = write("a.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n");
  TraceFilter groups;
  groups.groups = {"ChatGPT"};
  const auto g = issue_of([&] { Reader r(f, "azure", groups); });
  EXPECT_EQ(g.field, "groups");
  EXPECT_TRUE(contains(g.message, "the azure format has no group")) << g.message;
  TraceFilter negative;
  negative.duration_s = -1;
  EXPECT_EQ(issue_of([&] { Reader r(f, "azure", negative); }).field, "duration_s");
  EXPECT_EQ(issue_of([&] { Reader r(f, "moesim", {}, 0); }).field, "hash_block_tokens");
}

// ---- summary -----------------------------------------------------------------------------------

TEST_F(TraceReader, summary_counts_the_leading_run_of_seen_blocks_as_unbounded_prefix_hits) {
  // Hand-computed, 512-token blocks:
  //   1: ids [1,2],     nothing seen yet                     -> 0
  //   2: ids [1,2,3],   1 and 2 seen: 2 blocks = 1024 (< 1499) -> 1024
  //   3: ids [1,2],     2 blocks = 1024, capped at 1024 - 1    -> 1023
  //   4: ids [4,1],     4 unseen: the run is 0 (1 does not count after a miss) -> 0
  //   5: ids [1,5,2,3], 1 seen, 5 not                          -> 512
  //   total 2559; distinct ids {1,2,3,4,5}.
  const auto f = write("m.jsonl",
                       "{\"timestamp\": 0, \"input_length\": 1024, \"output_length\": 10, \"hash_ids\": [1, 2]}\n"
                       "{\"timestamp\": 1000, \"input_length\": 1500, \"output_length\": 20, \"hash_ids\": [1, 2, 3]}\n"
                       "{\"timestamp\": 3600000, \"input_length\": 1024, \"output_length\": 30, \"hash_ids\": [1, 2]}\n"
                       "{\"timestamp\": 3600001, \"input_length\": 600, \"output_length\": 40, \"hash_ids\": [4, 1]}\n"
                       "{\"timestamp\": 7300000, \"input_length\": 2000, \"output_length\": 50, \"hash_ids\": [1, 5, 2, 3]}\n");
  const auto s = summarize_trace(f, "mooncake");
  EXPECT_EQ(s.records, 5);
  EXPECT_EQ(s.unbounded_prefix_hit_tokens, 2559.0);
  EXPECT_EQ(s.distinct_hash_ids, 5);
  EXPECT_EQ(s.hash_block_tokens, 512);
  EXPECT_EQ(s.input_tokens_sum, 6148.0);
  EXPECT_EQ(s.output_tokens_sum, 150.0);
  EXPECT_EQ(s.max_input_tokens, 2000);
  EXPECT_EQ(s.max_output_tokens, 50);
  EXPECT_EQ(s.first_s, 0.0);
  EXPECT_EQ(s.last_s, 7300.0);
  EXPECT_EQ(s.per_hour_records, (std::vector<std::int64_t>{2, 2, 1}));
  EXPECT_TRUE(s.group_records.empty());

  // The window's records only: seen ids start empty at the window's start.
  TraceFilter later;
  later.start_s = 3600;
  const auto w = summarize_trace(f, "mooncake", later);
  EXPECT_EQ(w.records, 3);
  EXPECT_EQ(w.unbounded_prefix_hit_tokens, 512.0);  // records 3 and 4 miss; record 5 hits id 1
  EXPECT_EQ(w.per_hour_records, (std::vector<std::int64_t>{2, 1}));
  EXPECT_EQ(w.counters.skipped_before_window, 2);
}

TEST_F(TraceReader, summary_counts_records_per_group_and_failed_when_kept) {
  const auto f = write("b.csv",
                       "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
                       "0,ChatGPT,10,1,11,API log\n"
                       "1,GPT-4,20,0,20,API log\n"
                       "2,ChatGPT,30,3,33,API log\n");
  TraceFilter keep;
  keep.keep_failed = true;
  const auto s = summarize_trace(f, "burstgpt", keep);
  EXPECT_EQ(s.records, 3);
  EXPECT_EQ(s.failed, 1);
  EXPECT_EQ(s.group_records, (std::vector<std::pair<std::string, std::int64_t>>{{"ChatGPT", 2}, {"GPT-4", 1}}));
  EXPECT_EQ(s.unbounded_prefix_hit_tokens, 0.0);
  const auto dropped = summarize_trace(f, "burstgpt");
  EXPECT_EQ(dropped.records, 2);
  EXPECT_EQ(dropped.counters.dropped_failed, 1);
}

// ---- the shipped traces ------------------------------------------------------------------------

#ifndef MOESIM_SOURCE_DIR
#define MOESIM_SOURCE_DIR ""
#endif

/// MOESIM_TRACES_DIR, or ../shared/traces beside the source tree.
fs::path traces_dir() {
  if (const char* env = std::getenv("MOESIM_TRACES_DIR"); env != nullptr && *env != '\0') return env;
  const fs::path source = std::string(MOESIM_SOURCE_DIR).empty() ? fs::path(__FILE__).parent_path() / "../.." : fs::path(MOESIM_SOURCE_DIR);
  return source / "../shared/traces";
}

struct Totals {
  std::int64_t records = 0, input = 0, output = 0;
};

/// Azure CSV counted the plain way: every line after the first, the last two comma-separated fields.
Totals count_azure(const fs::path& file) {
  std::ifstream in(file);
  std::string line;
  std::getline(in, line);
  Totals t;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    const auto b = line.rfind(',');
    const auto a = line.rfind(',', b - 1);
    ++t.records;
    t.input += std::stoll(line.substr(a + 1, b - a - 1));
    t.output += std::stoll(line.substr(b + 1));
  }
  return t;
}

/// Mooncake JSONL counted the plain way: the number after each key's text.
Totals count_mooncake(const fs::path& file) {
  std::ifstream in(file);
  std::string line;
  Totals t;
  auto after = [&](const std::string& key) { return std::stoll(line.substr(line.find(key) + key.size())); };
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    ++t.records;
    t.input += after("\"input_length\":");
    t.output += after("\"output_length\":");
  }
  return t;
}

TEST_F(TraceReader, shipped_azure_and_mooncake_traces_read_whole_and_agree_with_a_plain_count) {
  const auto dir = traces_dir();
  if (!fs::exists(dir / "azure_llm_2023") || !fs::exists(dir / "mooncake_fast25"))
    GTEST_SKIP() << "no shipped traces at " << dir << " (set MOESIM_TRACES_DIR)";
  struct Case {
    const char* file;
    const char* format;
    std::int64_t records;
  };
  // Record counts as published (shared/traces/README.md).
  const std::vector<Case> cases = {{"azure_llm_2023/AzureLLMInferenceTrace_conv.csv", "azure", 19366},
                                   {"azure_llm_2023/AzureLLMInferenceTrace_code.csv", "azure", 8819},
                                   {"mooncake_fast25/conversation_trace.jsonl", "mooncake", 12031},
                                   {"mooncake_fast25/synthetic_trace.jsonl", "mooncake", 3993}};
  for (const auto& c : cases) {
    SCOPED_TRACE(c.file);
    const auto path = dir / c.file;
    const Totals plain = std::string(c.format) == "azure" ? count_azure(path) : count_mooncake(path);
    const auto s = summarize_trace(path, c.format);
    EXPECT_EQ(s.records, c.records);
    EXPECT_EQ(plain.records, c.records);
    EXPECT_EQ(s.input_tokens_sum, static_cast<double>(plain.input));
    EXPECT_EQ(s.output_tokens_sum, static_cast<double>(plain.output));
    EXPECT_EQ(s.counters.dropped_failed + s.counters.dropped_filtered + s.counters.skipped_before_window, 0);
    EXPECT_EQ(s.first_s, 0.0);
    EXPECT_GT(s.last_s, 1000.0);
  }
  // Computed once with /usr/bin/python3 (json module, a set of seen ids, min(run * 512,
  // input_length - 1) per line): 54,098,293 hit tokens and 182,790 distinct ids.
  const auto conv = summarize_trace(dir / "mooncake_fast25/conversation_trace.jsonl", "mooncake");
  EXPECT_EQ(conv.unbounded_prefix_hit_tokens, 54098293.0);
  EXPECT_EQ(conv.distinct_hash_ids, 182790);
  // Token sums from the same script (csv module): conv 22,361,870 in / 4,088,665 out.
  const auto az = summarize_trace(dir / "azure_llm_2023/AzureLLMInferenceTrace_conv.csv", "azure");
  EXPECT_EQ(az.input_tokens_sum, 22361870.0);
  EXPECT_EQ(az.output_tokens_sum, 4088665.0);
  // 18:15:46.6805900 to 19:14:08.4025270.
  EXPECT_NEAR(az.last_s, 3501.721937, 1e-6);
}

TEST_F(TraceReader, shipped_azure_trace_window_keeps_exactly_the_records_inside_it) {
  const auto path = traces_dir() / "azure_llm_2023/AzureLLMInferenceTrace_conv.csv";
  if (!fs::exists(path)) GTEST_SKIP() << "no shipped trace " << path << " (set MOESIM_TRACES_DIR)";
  std::int64_t in_window = 0;
  for (Reader all(path, "azure"); auto r = all.next();) in_window += r->time_s >= 600 && r->time_s < 1200 ? 1 : 0;
  TraceFilter window;
  window.start_s = 600;
  window.duration_s = 600;
  Reader reader(path, "azure", window);
  std::int64_t kept = 0;
  double last = 0;
  while (auto r = reader.next()) {
    ++kept;
    last = r->time_s;
  }
  EXPECT_EQ(kept, in_window);
  EXPECT_GT(kept, 1000);
  EXPECT_LT(last, 1200.0);
  EXPECT_TRUE(reader.counters().reached_window_end);
  EXPECT_LT(reader.counters().lines, 19366);  // stopped reading well before the end
}

}  // namespace
}  // namespace moesim::test
