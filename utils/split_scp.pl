#!/usr/bin/env perl
# utils/split_scp.pl -- split a Kaldi-style list (wav.scp, text, utt2spk, ...) into N parts.
#
# Usage:
#   split_scp.pl [--utt2spk=FILE] <in.scp> <out.1> <out.2> ... <out.N>
#   split_scp.pl [--utt2spk=FILE] [--one-based] -j <N> <K> <in.scp> [<out>]
#
# Why: parallel stages ("run.pl JOB=1:N ...") work on N key-disjoint shards of a data
# directory; this makes the shards, as Kaldi's tool of the same name does (our own code).
#
# The first form writes all N parts. The -j form writes only part K of N (K counts from 0,
# or from 1 with --one-based) to <out>, or to stdout without <out>; part K is the same as
# <out.K+1> of the first form. <in.scp> may be "-" for stdin.
#
# Without --utt2spk the lines are cut into N contiguous parts whose sizes differ by at most
# one (the first "lines mod N" parts get the extra line). With --utt2spk=FILE (or
# "--utt2spk FILE") the key (first field) of every line is looked up in FILE, and the cuts are
# placed only between speakers, as close as possible to the even split, so no speaker is in
# two parts. Lines must be grouped by speaker (as in a sorted Kaldi data dir); a speaker
# that reappears later is an error, as are a key missing from FILE, N > number of lines, and
# (with --utt2spk) N > number of speakers.
use strict;
use warnings;

# Errors exit with status 1 (not 255), with the message only.
$SIG{__DIE__} = sub { return if $^S; print STDERR $_[0]; exit 1; };

my $me = "split_scp.pl";

sub usage {
  die "Usage: $me [--utt2spk=FILE] <in.scp> <out.1> ... <out.N>\n"
    . "   or: $me [--utt2spk=FILE] [--one-based] -j <N> <K> <in.scp> [<out>]\n";
}

my ($utt2spk_file, $one_based, $num_jobs, $job_id);
while (@ARGV && $ARGV[0] =~ /^-/ && $ARGV[0] ne '-') {
  my $opt = shift @ARGV;
  if ($opt =~ /^--utt2spk=(.+)$/) {
    $utt2spk_file = $1;
  } elsif ($opt eq '--utt2spk') {
    usage() unless @ARGV;
    $utt2spk_file = shift @ARGV;
  } elsif ($opt eq '--one-based') {
    $one_based = 1;
  } elsif ($opt eq '-j') {
    usage() unless @ARGV >= 2;
    ($num_jobs, $job_id) = splice(@ARGV, 0, 2);
    die "$me: -j expects two integers, got '$num_jobs' '$job_id'\n"
      unless $num_jobs =~ /^\d+$/ && $job_id =~ /^\d+$/;
  } else {
    die "$me: unknown option '$opt'\n";
  }
}

my ($in_file, @outputs);
if (defined $num_jobs) {
  usage() unless @ARGV == 1 || @ARGV == 2;
  $in_file = $ARGV[0];
  $job_id -= 1 if $one_based;
  die "$me: -j $num_jobs: the number of parts must be at least 1\n" if $num_jobs < 1;
  die "$me: -j $num_jobs: part index out of range (0-based: 0.." . ($num_jobs - 1)
    . ($one_based ? ", you gave " . ($job_id + 1) . " with --one-based" : "") . ")\n"
    if $job_id < 0 || $job_id >= $num_jobs;
} else {
  usage() unless @ARGV >= 2;
  ($in_file, @outputs) = @ARGV;
  $num_jobs = @outputs;
}

# Read the input lines (kept byte-exact, newline included).
my $in_fh;
if ($in_file eq '-') {
  $in_fh = \*STDIN;
} else {
  open($in_fh, '<', $in_file) or die "$me: cannot open $in_file: $!\n";
}
my @lines = <$in_fh>;
close($in_fh) unless $in_file eq '-';
$lines[-1] .= "\n" if @lines && $lines[-1] !~ /\n\z/;
my $num_lines = @lines;

die "$me: cannot split $in_file into $num_jobs parts: it has only $num_lines line(s) "
  . "(use at most $num_lines jobs)\n"
  if $num_jobs > $num_lines;

# sizes[i] = number of lines in part i.
my @sizes;
if (!defined $utt2spk_file) {
  my $base = int($num_lines / $num_jobs);
  my $extra = $num_lines % $num_jobs;
  @sizes = map { $base + ($_ < $extra ? 1 : 0) } 0 .. $num_jobs - 1;
} else {
  my %spk_of;
  open(my $u_fh, '<', $utt2spk_file) or die "$me: cannot open utt2spk file $utt2spk_file: $!\n";
  while (my $l = <$u_fh>) {
    my @f = split(' ', $l);
    next unless @f;
    die "$me: bad line in $utt2spk_file (expected '<utt> <spk>'): $l" unless @f == 2;
    $spk_of{$f[0]} = $f[1];
  }
  close($u_fh);

  # Group consecutive lines by speaker; spk_sizes[j] = lines of the j-th speaker run.
  my (@spk_sizes, %seen, $prev_spk);
  for my $n (0 .. $#lines) {
    my ($key) = split(' ', $lines[$n]);
    die "$me: line " . ($n + 1) . " of $in_file has no key\n" unless defined $key;
    my $spk = $spk_of{$key};
    die "$me: key '$key' (line " . ($n + 1) . " of $in_file) is not in $utt2spk_file\n"
      unless defined $spk;
    if (defined $prev_spk && $spk eq $prev_spk) {
      $spk_sizes[-1]++;
      next;
    }
    die "$me: speaker '$spk' reappears at line " . ($n + 1) . " of $in_file; lines must be "
      . "grouped by speaker (sort the data dir, e.g. with utils/fix_data_dir.sh)\n"
      if $seen{$spk}++;
    push @spk_sizes, 1;
    $prev_spk = $spk;
  }
  my $num_spk = @spk_sizes;
  die "$me: cannot split $in_file into $num_jobs parts without splitting a speaker: it has "
    . "only $num_spk speaker(s) (use at most $num_spk jobs)\n"
    if $num_jobs > $num_spk;

  # cum[j] = lines in the first j speakers. Cut k (1..N-1) goes after the speaker whose
  # cumulative count is closest to k*lines/N, keeping every part non-empty.
  my @cum = (0);
  push @cum, $cum[-1] + $_ for @spk_sizes;
  my @cut = (0);
  for my $k (1 .. $num_jobs - 1) {
    my $target = $k * $num_lines / $num_jobs;
    my $lo = $cut[-1] + 1;
    my $hi = $num_spk - ($num_jobs - $k);
    my $best = $lo;
    for my $j ($lo .. $hi) {
      $best = $j if abs($cum[$j] - $target) < abs($cum[$best] - $target);
      last if $cum[$j] > $target;
    }
    push @cut, $best;
  }
  push @cut, $num_spk;
  @sizes = map { $cum[$cut[$_ + 1]] - $cum[$cut[$_]] } 0 .. $num_jobs - 1;
}

# Write the parts.
my $start = 0;
for my $i (0 .. $num_jobs - 1) {
  my $end = $start + $sizes[$i];
  if (@outputs) {
    open(my $o_fh, '>', $outputs[$i]) or die "$me: cannot write $outputs[$i]: $!\n";
    print $o_fh @lines[$start .. $end - 1];
    close($o_fh) or die "$me: error writing $outputs[$i]: $!\n";
  } elsif ($i == $job_id) {
    my $out = $ARGV[1];
    my $o_fh = \*STDOUT;
    if (defined $out) {
      open($o_fh, '>', $out) or die "$me: cannot write $out: $!\n";
    }
    print $o_fh @lines[$start .. $end - 1];
    close($o_fh) or die "$me: error writing " . ($out // 'stdout') . ": $!\n";
  }
  $start = $end;
}
exit 0;
