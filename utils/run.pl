#!/usr/bin/env perl
# utils/run.pl -- run a (possibly parallel, array-indexed) command on this machine, Kaldi-style.
#
# Usage:
#   run.pl [options] [VAR=START:END | VAR=N] <log-file> <command> [<arg> ...]
#   e.g. run.pl --max-jobs-run 4 JOB=1:8 exp/log/decode.JOB.log \
#          python -m espnet_adapters.bin.decode --keys data/split8/JOB/wav.scp
#
# Why: recipes call "${train_cmd} JOB=1:N log.JOB.log cmd ..." and must not care whether the
# backend is this local runner or a cluster one (slurm.pl); both share this interface.
#
# Options (each takes a value, as "--opt value" or "--opt=value"):
#   --max-jobs-run N   run at most N tasks at the same time (default: all at once).
#   --num-threads N    only reported in the log's "# Accounting" line (default 1).
#   --mem M, --gpu G, --time T, --config C, --num-nodes N
#                      accepted and ignored locally, so that command lines written for a
#                      cluster backend also work here. Other --options are ignored with a warning.
#
# Behaviour:
#   - VAR is any identifier (JOB, TASK, ...). Every occurrence of VAR in <log-file> and in the
#     command is replaced by the task number (plain substring replacement, as in Kaldi).
#     Without a range, one task is run.
#   - The command runs under "bash -c". A single command argument is used verbatim, so
#     run.pl log "a | b > c" runs a pipeline. With several arguments, those that are empty or
#     contain whitespace, quotes, a backslash or a glob character (* ? [ ]) are single-quoted,
#     so they reach the program unchanged; the others (e.g. an escaped \| or >, 2>&1, ark:-)
#     are passed unquoted, so shell operators given as separate arguments work as in Kaldi.
#   - The log's directory is created. The log holds "# <command>", "# Started at <date>", the
#     command's stdout and stderr, "# Accounting: time=<sec> threads=<n>" and
#     "# Ended (code <exit status>) at <date>". stdin of every task is /dev/null.
#   - Exit status 0 if every task succeeded; else 1, with "run.pl: K / N failed, log is in <log>"
#     (the log of the first failed task) and the list of failed task numbers on stderr.
#   - SIGINT/SIGTERM/SIGHUP: the running tasks (each in its own process group) are terminated,
#     their logs are closed with the exit code, and run.pl exits 128+signal.
use strict;
use warnings;
use POSIX qw(setpgid);
use File::Basename qw(dirname);
use File::Path qw(make_path);
use FindBin qw($RealBin);
use lib $RealBin;
use JobCommon qw(parse_switches parse_job_args subst_var now);

# Errors exit with status 1 (not 255), with the message only.
$SIG{__DIE__} = sub { return if $^S; print STDERR $_[0]; exit 1; };

my $me = "run.pl";

sub usage {
  my ($code) = @_;
  print STDERR "Usage: $me [--max-jobs-run N] [--num-threads N] [--mem M] [--gpu G] [--time T] "
    . "[--config C] [VAR=START:END] <log-file> <command> [<arg> ...]\n";
  exit($code // 1);
}

my $max_jobs_run = 0;    # 0 = no limit
my $num_threads  = 1;
my %ignored_opt  = map { $_ => 1 } qw(mem gpu time config num_nodes);

for my $pair (parse_switches(\@ARGV, \&usage)) {
  my ($name, $value) = @$pair;
  if ($name eq 'max_jobs_run') {
    die "$me: --max-jobs-run expects a positive integer, got '$value'\n"
      unless $value =~ /^\d+$/ && $value > 0;
    $max_jobs_run = $value;
  } elsif ($name eq 'num_threads') {
    die "$me: --num-threads expects a positive integer, got '$value'\n"
      unless $value =~ /^\d+$/ && $value > 0;
    $num_threads = $value;
  } elsif (!$ignored_opt{$name}) {
    (my $shown = $name) =~ tr/_/-/;
    warn "$me: ignoring unknown option --$shown $value\n";
  }
}

my ($var, $first, $last, $log_template, $cmd_template) = parse_job_args($me, \@ARGV, \&usage);
sub subst { return subst_var($_[0], $var, $_[1]); }

sub append_log {
  my ($file, $text) = @_;
  open(my $fh, '>>', $file) or die "$me: cannot append to $file: $!\n";
  print $fh $text;
  close($fh);
}

my %running;    # pid => { id, log, start }
my %status;     # task id => exit code
my $caught_signal;

sub start_task {
  my ($id) = @_;
  my $log = subst($log_template, $id);
  my $cmd = subst($cmd_template, $id);
  my $dir = dirname($log);
  make_path($dir) unless -d $dir;
  (my $shown = $cmd) =~ s/\n/\n# /g;
  open(my $fh, '>', $log) or die "$me: cannot write log file $log: $!\n";
  print $fh "# $shown\n# Started at " . now() . "\n";
  close($fh);

  my $pid = fork();
  die "$me: fork failed: $!\n" unless defined $pid;
  if ($pid == 0) {
    setpgid(0, 0);    # own process group, so a signal can reach the whole pipeline
    $SIG{$_} = 'DEFAULT' for qw(INT TERM HUP);
    open(STDIN, '<', '/dev/null') or die "$me: /dev/null: $!\n";
    open(STDOUT, '>>', $log) or die "$me: cannot append to $log: $!\n";
    open(STDERR, '>&', \*STDOUT) or die "$me: cannot dup stdout: $!\n";
    exec('bash', '-c', $cmd) or do { print STDERR "$me: cannot exec bash: $!\n"; POSIX::_exit(127); };
  }
  setpgid($pid, $pid);    # also from the parent, to avoid a race with early signals
  $running{$pid} = { id => $id, log => $log, start => time() };
}

sub exit_code {
  my ($wait_status) = @_;
  return 128 + ($wait_status & 127) if $wait_status & 127;
  return $wait_status >> 8;
}

sub finish_task {
  my ($pid, $wait_status) = @_;
  my $task = delete $running{$pid} or return;
  my $code = exit_code($wait_status);
  my $elapsed = time() - $task->{start};
  append_log($task->{log},
    "# Accounting: time=$elapsed threads=$num_threads\n# Ended (code $code) at " . now() . "\n");
  $status{$task->{id}} = $code;
}

sub reap_one {    # blocks until one child has finished
  my $pid = waitpid(-1, 0);
  if ($pid > 0) {
    finish_task($pid, $?);
  } elsif (keys %running) {    # cannot happen unless someone reaped our children
    die "$me: lost track of running tasks (waitpid: $!)\n";
  }
}

sub on_signal {
  my ($sig) = @_;
  return if defined $caught_signal;
  $caught_signal = $sig;
  kill('TERM', -$_) for keys %running;
  # Tasks that ignore TERM get KILLed after a grace period, so the waits below cannot hang.
  $SIG{ALRM} = sub { kill('KILL', -$_) for keys %running; };
  alarm(5);
}
$SIG{$_} = \&on_signal for qw(INT TERM HUP);

my $total = $last - $first + 1;
my $limit = $max_jobs_run || $total;
for my $id ($first .. $last) {
  reap_one() while !defined($caught_signal) && keys(%running) >= $limit;
  last if defined $caught_signal;
  start_task($id);
}
reap_one() while keys %running;

if (defined $caught_signal) {
  my %num = (HUP => 1, INT => 2, TERM => 15);
  print STDERR "$me: interrupted by SIG$caught_signal; running tasks were terminated\n";
  exit(128 + $num{$caught_signal});
}

my @failed = grep { $status{$_} != 0 } sort { $a <=> $b } keys %status;
exit(0) unless @failed;
my $first_log = subst($log_template, $failed[0]);
print STDERR "$me: " . scalar(@failed) . " / $total failed, log is in $first_log\n";
if (defined $var) {
  print STDERR "$me: failed tasks: " . join(' ', map { "$var=$_" } @failed) . "\n";
}
exit(1);
