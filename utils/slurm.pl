#!/usr/bin/env perl
# utils/slurm.pl -- run.pl's interface on a SLURM cluster: one sbatch job (array) per call.
#
# Usage:
#   slurm.pl [options] [VAR=START:END | VAR=N] <log-file> <command> [<arg> ...]
#   e.g. slurm.pl --mem 4G --max-jobs-run 8 JOB=1:32 exp/log/decode.JOB.log \
#          python -m espnet_adapters.bin.decode --keys data/split32/JOB/wav.scp
#
# Why: recipes call "${train_cmd} JOB=1:N log.JOB.log cmd ..."; cmd.sh picks run.pl (this
# machine) or slurm.pl (a cluster) without the recipe noticing.  Same interface, same logs.
#
# Options (each takes a value, as "--opt value" or "--opt=value"; "-" and "_" are equivalent):
#   --config FILE      option rules (Kaldi/ESPnet format, see conf/slurm.conf).  Default:
#                      conf/slurm.conf if it exists in the current directory, else a built-in
#                      config (printed by --help).
#   --max-jobs-run N   at most N tasks of the array run at once (sbatch --array=A-B%N).
#   --max-wait SEC     give up after SEC seconds: cancel the unfinished tasks (scancel) and
#                      fail.  Default 0 = wait as long as the tasks are in the queue.
#   --num-threads N, --mem M, --gpu G, --time T, --num-nodes N, --name S, any --NAME V:
#                      translated to sbatch flags by the config's rules; an option without a
#                      rule (or a value no rule allows) is an error naming it.
#                      --num-threads is also reported in the log's "# Accounting" line.
#
# Config rules (one a line, "#" starts a comment):
#   command sbatch --export=PATH     the submit command and its fixed flags (required)
#   option mem=* --mem-per-cpu $0    for --mem V: these flags, $0 replaced by V
#   option mem=0                     for --mem 0: no flag (an exact value beats "*")
#   default gpu=0                    as if "--gpu 0" was given when --gpu is not
# Flags are added in the order in which the options first appear in the config, so when two
# rules set the same sbatch flag (gpu=* "-c $0" and num_threads=* "--cpus-per-task $0"), the
# later rule in the file wins (sbatch keeps the last of repeated flags).  Flags are split on
# whitespace; no shell quoting.
#
# How it works:
#   - The logs of the tasks are removed, then a bash script is written to <log-dir>/q/<name>.sh
#     and submitted once: sbatch <flags> --array=START-END[%N] (no --array without VAR).
#     sbatch's own output goes to <log-dir>/q/<name>.log.
#   - Each task cd's to the submit directory, sources ./path.sh if there is one (the job only
#     inherits PATH with --export=PATH), replaces VAR by its index in the log name and the
#     command (plain substring replacement, as run.pl), and writes its log exactly as run.pl:
#     "# <command>", "# Started at <date>", output, "# Accounting: time=<s> threads=<n>",
#     "# Ended (code <status>) at <date>".  A SIGTERM (scancel, time limit) reaches the command;
#     the task still closes its log with the command's status (143).  Then it writes the status
#     to <log-dir>/q/<name>.done.<pid>.<index>.  The log directory must be shared with the nodes.
#   - slurm.pl polls these status files (every 0.5 s for 5 s, then backing off to every 5 s)
#     and, every 2 s backing off to 15 s, "squeue -j <job>" (never sacct): a task that left the
#     queue, or ended (CANCELLED, NODE_FAIL, TIMEOUT, OUT_OF_MEMORY, ...), without writing its
#     status for a grace period (${SLURM_PL_GRACE:-10} s, for slow shared file systems) is
#     counted as failed, and this is noted in its log.  A task pending for a reason that may
#     never clear (PartitionConfig, BadConstraints, ...) gets a warning, not a failure.
#   - Exit status 0 if every task succeeded; else 1, with run.pl's lines
#     "slurm.pl: K / N failed, log is in <log>" and "slurm.pl: failed tasks: JOB=i ...", then one
#     line per failed task (index, SLURM job id, exit code or what happened, log).
#   - SIGINT/SIGTERM/SIGHUP: the job is cancelled (scancel) and slurm.pl exits 128+signal.
#   Environment: SLURM_PL_GRACE (s, default 10); the SLURM commands' own (SLURM_CONF, ...).
use strict;
use warnings;
use POSIX ();
use File::Basename qw(dirname basename);
use File::Path qw(make_path);
use Cwd qw(getcwd);
use Time::HiRes qw(time sleep);
use FindBin qw($RealBin);
use lib $RealBin;
use JobCommon qw(parse_switches parse_job_args subst_var now);

$SIG{__DIE__} = sub { return if $^S; print STDERR $_[0]; exit 1; };

my $me = "slurm.pl";

my $builtin_config = <<'EOF';
# Built-in default of utils/slurm.pl (used without --config and without ./conf/slurm.conf).
command sbatch --export=PATH
option name=* --job-name $0
option time=* --time $0
option mem=* --mem-per-cpu $0
option mem=0
default gpu=0
option gpu=0
option gpu=* --gres=gpu:$0 -c $0
option num_threads=* --cpus-per-task $0
option num_threads=1
option num_nodes=* --nodes $0
EOF

sub usage {
  my ($code) = @_;
  print STDERR "Usage: $me [--config C] [--max-jobs-run N] [--max-wait SEC] [--num-threads N] "
    . "[--mem M] [--gpu G] [--time T] [VAR=START:END] <log-file> <command> [<arg> ...]\n"
    . "(see the header of $0; built-in config:)\n$builtin_config";
  exit($code // 1);
}

# option name (with underscores) => value, as given on the command line (the last one wins)
my %opt = map { @$_ } parse_switches(\@ARGV, \&usage);

my $max_jobs_run = delete $opt{max_jobs_run};
if (defined $max_jobs_run) {
  die "$me: --max-jobs-run expects a positive integer, got '$max_jobs_run'\n"
    unless $max_jobs_run =~ /^\d+$/ && $max_jobs_run > 0;
}
my $max_wait = delete $opt{max_wait} // 0;
die "$me: --max-wait expects a number of seconds, got '$max_wait'\n"
  unless $max_wait =~ /^\d+(\.\d*)?$/;
my $num_threads = $opt{num_threads} // 1;
die "$me: --num-threads expects a positive integer, got '$num_threads'\n"
  unless $num_threads =~ /^\d+$/ && $num_threads > 0;
my $grace = $ENV{SLURM_PL_GRACE} // 10;
die "$me: SLURM_PL_GRACE must be a number of seconds, got '$grace'\n" unless $grace =~ /^\d+(\.\d*)?$/;

my ($var, $first, $last, $log_template, $cmd_template) = parse_job_args($me, \@ARGV, \&usage);

# ---- The config: sbatch command and the flags of the options. ----
my $config = delete $opt{config};
my ($config_name, $config_text);
if (defined $config) {
  open(my $fh, '<', $config) or die "$me: cannot read config file $config: $!\n";
  local $/;
  $config_text = <$fh>;
  close($fh);
  $config_name = $config;
} elsif (-f 'conf/slurm.conf') {
  open(my $fh, '<', 'conf/slurm.conf') or die "$me: cannot read conf/slurm.conf: $!\n";
  local $/;
  $config_text = <$fh>;
  close($fh);
  $config_name = 'conf/slurm.conf';
} else {
  $config_text = $builtin_config;
  $config_name = "the built-in config of $me";
}

my @submit;          # the command words
my %rule_any;        # name => flags with $0
my %rule_value;      # name => { value => flags }
my %defaults;        # name => value
my %rule_pos;        # name => position of its first rule (applies the flags in config order)
my $pos = 0;
for my $line (split /\n/, $config_text) {
  (my $l = $line) =~ s/\s*#.*//;
  $l =~ s/^\s+//;
  next if $l eq '';
  if ($l =~ /^command\s+(\S.*)$/) {
    @submit = split ' ', $1;
  } elsif ($l =~ /^option\s+([\w-]+)=\*(?:\s+(.*))?$/) {
    (my $n = $1) =~ tr/-/_/;
    $rule_any{$n} = $2 // '';
    $rule_pos{$n} //= $pos++;
  } elsif ($l =~ /^option\s+([\w-]+)=(\S+)(?:\s+(.*))?$/) {
    (my $n = $1) =~ tr/-/_/;
    $rule_value{$n}{$2} = $3 // '';
    $rule_pos{$n} //= $pos++;
  } elsif ($l =~ /^default\s+([\w-]+)=(\S+)\s*$/) {
    (my $n = $1) =~ tr/-/_/;
    $defaults{$n} = $2;
    $rule_pos{$n} //= $pos++;
  } else {
    die "$me: cannot parse the line '$line' of $config_name\n";
  }
}
die "$me: $config_name has no 'command ...' line (e.g. 'command sbatch --export=PATH')\n"
  unless @submit;

my %value = %opt;
for my $n (keys %defaults) { $value{$n} = $defaults{$n} unless exists $value{$n}; }
my @flags;
for my $n (sort { ($rule_pos{$a} // 1e9) <=> ($rule_pos{$b} // 1e9) || $a cmp $b } keys %value) {
  my $v = $value{$n};
  (my $shown = $n) =~ tr/_/-/;
  my $f;
  if (exists $rule_value{$n} && exists $rule_value{$n}{$v}) {
    $f = $rule_value{$n}{$v};
  } elsif (exists $rule_any{$n}) {
    ($f = $rule_any{$n}) =~ s/\$0/$v/g;
  } elsif (exists $rule_value{$n}) {
    die "$me: --$shown $v is not allowed by $config_name (allowed: "
      . join(', ', sort keys %{ $rule_value{$n} }) . ")\n";
  } else {
    die "$me: unknown option --$shown: $config_name has no 'option $n=...' rule for it\n";
  }
  push @flags, split(' ', $f);
}
if (defined $max_jobs_run && !defined $var) {
  warn "$me: ignoring --max-jobs-run for a single (non-array) job\n";
  undef $max_jobs_run;
}

sub subst { return subst_var($_[0], $var, $_[1]); }
sub shq { my ($s) = @_; $s =~ s/'/'\\''/g; return "'$s'"; }

# ---- Files: q/ next to the logs. ----
my $cwd = getcwd();
my $logdir = dirname($log_template);
$logdir = dirname($logdir) while defined $var && index($logdir, $var) >= 0 && $logdir ne dirname($logdir);
my $qdir = "$logdir/q";
make_path($qdir) unless -d $qdir;
die "$me: cannot create $qdir\n" unless -d $qdir;
my $stem = basename($log_template);
$stem =~ s/\.?\Q$var\E//g if defined $var;
$stem =~ s/\.[A-Za-z]{1,5}$//;
$stem = 'job' if $stem eq '' || $stem =~ /^\./;
my $script = "$qdir/$stem.sh";
my $queue_log = "$qdir/$stem.log";
my $tag = "$stem.done.$$";
my $status_prefix = "$qdir/$tag.";

my @tasks = ($first .. $last);
for my $id (@tasks) {
  unlink(subst($log_template, $id), "$status_prefix$id");
  my $d = dirname(subst($log_template, $id));
  make_path($d) unless -d $d;
}

my $array_opt = defined $var ? "--array=$first-$last" . (defined $max_jobs_run ? "%$max_jobs_run" : '') : undef;
my @sbatch = (@submit, @flags, '--parsable', '--open-mode=append', '-o', $queue_log, '-e', $queue_log,
  (defined $array_opt ? ($array_opt) : ()), $script);

{
  my $task_expr = defined $var ? '${SLURM_ARRAY_TASK_ID}' : '1';
  my ($log_line, $cmd_line);
  if (defined $var) {
    $log_line = 'log=${log_template//' . shq($var) . '/${task}}';
    $cmd_line = 'cmd=${cmd_template//' . shq($var) . '/${task}}';
  } else {
    $log_line = 'log=${log_template}';
    $cmd_line = 'cmd=${cmd_template}';
  }
  my $submitted = join(' ', @sbatch);
  $submitted =~ s/\n/ /g;
  open(my $fh, '>', $script) or die "$me: cannot write $script: $!\n";
  print $fh <<"EOF";
#!/bin/bash
# Written by utils/slurm.pl on ${\ now()} (pid $$), submitted with:
#   $submitted
cd ${\ shq($cwd)} || exit 1
# Only PATH is exported (--export=PATH): the recipe's environment comes from ./path.sh.
if [ -f ./path.sh ]; then . ./path.sh; fi
task=$task_expr
log_template=${\ shq($log_template)}
cmd_template=${\ shq($cmd_template)}
$log_line
$cmd_line
status=${\ shq($status_prefix)}\${task}
echo "\$(date '+%Y-%m-%dT%H:%M:%S') task \${task} (job \${SLURM_ARRAY_JOB_ID:-\${SLURM_JOB_ID}}_\${task}) started on \$(hostname): \${log}"
mkdir -p "\$(dirname "\${log}")"
start=\$(date +%s)
printf '# %s\\n# Started at %s\\n' "\${cmd//\$'\\n'/\$'\\n'# }" "\$(LC_ALL=C date '+%a %b %e %H:%M:%S %Z %Y')" > "\${log}"
# A SIGTERM (scancel, time limit) reaches the command from SLURM; this shell waits for it and
# closes the log with its status.
trap 'echo "task \${task}: got SIGTERM"' TERM
trap 'echo "task \${task}: got SIGINT"' INT
bash -c "\${cmd}" < /dev/null >> "\${log}" 2>&1
code=\$?
end=\$(date +%s)
printf '# Accounting: time=%d threads=%d\\n# Ended (code %d) at %s\\n' \$((end - start)) $num_threads "\${code}" \\
    "\$(LC_ALL=C date '+%a %b %e %H:%M:%S %Z %Y')" >> "\${log}"
echo "\${code}" > "\${status}.tmp" && mv -f "\${status}.tmp" "\${status}"
echo "\$(date '+%Y-%m-%dT%H:%M:%S') task \${task} ended with code \${code}"
exit \${code}
EOF
  close($fh) or die "$me: cannot write $script: $!\n";
  chmod(0755, $script);
}

# ---- Submit. ----
# A signal from here on cancels the job (once it is known) instead of orphaning it.
my $caught_signal;
sub on_signal { my ($sig) = @_; $caught_signal //= $sig; }
$SIG{$_} = \&on_signal for qw(INT TERM HUP);
my $jobid;
{
  my $pid = open(my $out, '-|');
  die "$me: fork failed: $!\n" unless defined $pid;
  if ($pid == 0) {
    open(STDERR, '>&', \*STDOUT);
    exec({ $sbatch[0] } @sbatch) or do { print "cannot run $sbatch[0]: $!\n"; POSIX::_exit(127); };
  }
  my @lines = <$out>;
  close($out);
  my $rc = $? >> 8;
  if (open(my $q, '>>', $queue_log)) { print $q "# " . join(' ', @sbatch) . "\n", @lines; close($q); }
  for (@lines) { $jobid = $1 if /^(\d+)(?:;\S+)?\s*$/; }
  if ($rc != 0 || !defined $jobid) {
    print STDERR "$me: submitting failed (exit code $rc): " . join(' ', @sbatch) . "\n", @lines;
    exit 1;
  }
}

# ---- Wait. ----
my %status;        # id => exit code (from the status file)
my %lost;          # id => description (left the queue without a status)
my %pending = map { $_ => 1 } @tasks;
my %gone_since;    # id => time it was first seen out of the queue
my %gone_state;

sub task_name { my ($id) = @_; return defined $var ? "${jobid}_$id" : $jobid; }

sub cancel_job { system('scancel', $jobid); }

my %hopeless_reason = map { $_ => 1 }
  qw(PartitionConfig BadConstraints PartitionNodeLimit PartitionTimeLimit InvalidQOS InvalidAccount
     DependencyNeverSatisfied JobHeldAdmin);
my %warned;
my %finished_state = map { $_ => 1 }
  qw(COMPLETED CANCELLED FAILED TIMEOUT NODE_FAIL PREEMPTED BOOT_FAIL DEADLINE OUT_OF_MEMORY REVOKED);

sub read_status_files {
  opendir(my $dh, $qdir) or return;    # reading the directory also refreshes NFS caches
  my @names = grep { index($_, "$tag.") == 0 } readdir($dh);
  closedir($dh);
  for my $name (@names) {
    my $id = substr($name, length("$tag."));
    next unless $id =~ /^\d+$/ && $pending{$id};
    open(my $fh, '<', "$qdir/$name") or next;
    my $code = <$fh>;
    close($fh);
    next unless defined $code && $code =~ /^(\d+)\s*$/;
    $status{$id} = $1;
    delete $pending{$id};
    unlink("$qdir/$name");
  }
}

# Asks squeue about the job; returns 0 if it could not tell.
sub check_queue {
  my $pid = open(my $out, '-|');
  return 0 unless defined $pid;
  if ($pid == 0) {
    open(STDERR, '>&', \*STDOUT);
    exec('squeue', '-h', '-r', '-t', 'all', '-j', $jobid, '-o', '%i %T %r') or POSIX::_exit(127);
  }
  my @lines = <$out>;
  close($out);
  my $rc = $? >> 8;
  my %state;
  if ($rc != 0) {
    return 0 unless grep { /Invalid job id/i } @lines;    # controller busy/unreachable: no news
  } else {
    for (@lines) {
      my ($id, $s, $reason);
      if (/^\d+_(\d+)\s+(\S+)\s*(\S*)/) {
        ($id, $s, $reason) = ($1, $2, $3);
      } elsif (/^\d+\s+(\S+)\s*(\S*)/ && !defined $var) {
        ($id, $s, $reason) = (1, $1, $2);
      } else {
        next;
      }
      $state{$id} = $s;
      if ($s eq 'PENDING' && $hopeless_reason{$reason} && !$warned{$reason}++) {
        print STDERR "$me: warning: SLURM job " . task_name($id) . " is pending with reason $reason: "
          . "it may never start (check its partition, --mem, --gpu, --num-threads, --time; "
          . "scancel $jobid gives up)\n";
      }
    }
  }
  my $now = time();
  for my $id (keys %pending) {
    my $s = $state{$id};
    if (defined $s && !$finished_state{$s}) {
      delete $gone_since{$id};
      next;
    }
    $gone_since{$id} //= $now;
    # Keep the state seen last (squeue forgets a job MinJobAge after its end).
    $gone_state{$id} = "ended in state $s" if defined $s;
    $gone_state{$id} //= "left the queue";
  }
  return 1;
}

my $start = time();
my $interval = 0.5;
my $queue_interval = 2;
my $last_queue_check = $start;
while (keys %pending) {
  read_status_files();
  last unless keys %pending;
  last if defined $caught_signal;
  my $now = time();
  if ($now - $last_queue_check >= $queue_interval) {
    $last_queue_check = $now;
    $queue_interval = $queue_interval * 1.5 > 15 ? 15 : $queue_interval * 1.5;
    if (check_queue()) {
      read_status_files();    # a task may have finished since the first look
      for my $id (keys %pending) {
        next unless defined $gone_since{$id};
        # Re-check sooner than usual while a task is in its grace period.
        $queue_interval = 2 if $queue_interval > 2;
        next if time() - $gone_since{$id} < $grace;
        $lost{$id} = "$gone_state{$id} without reporting an exit status "
          . "(cancelled, time limit, out of memory or node failure?)";
        delete $pending{$id};
        my $log = subst($log_template, $id);
        if (open(my $fh, '>>', $log)) {
          print $fh "# $me: SLURM job " . task_name($id) . " $lost{$id}, noticed at " . now() . "\n";
          close($fh);
        }
      }
    }
  }
  last unless keys %pending;
  if ($max_wait > 0 && time() - $start >= $max_wait) {
    my @left = sort { $a <=> $b } keys %pending;
    print STDERR "$me: gave up after ${max_wait} s (--max-wait); cancelling job $jobid; unfinished: "
      . join(' ', map { defined $var ? "$var=$_" : task_name($_) } @left) . "\n";
    cancel_job();
    $lost{$_} = "did not finish within --max-wait ${max_wait} s (cancelled)" for @left;
    %pending = ();
    last;
  }
  sleep($interval);
  # Every 0.5 s for the first 5 s (tiny jobs end quickly), then backing off to every 5 s.
  $interval = $interval * 1.3 > 5 ? 5 : $interval * 1.3 if time() - $start > 5;
}

if (defined $caught_signal) {
  my %num = (HUP => 1, INT => 2, TERM => 15);
  cancel_job();
  print STDERR "$me: interrupted by SIG$caught_signal; cancelled SLURM job $jobid\n";
  exit(128 + $num{$caught_signal});
}

my @failed = sort { $a <=> $b } ((grep { $status{$_} != 0 } keys %status), keys %lost);
exit(0) unless @failed;
my $total = scalar @tasks;
print STDERR "$me: " . scalar(@failed) . " / $total failed, log is in " . subst($log_template, $failed[0]) . "\n";
print STDERR "$me: failed tasks: " . join(' ', map { "$var=$_" } @failed) . "\n" if defined $var;
my $shown = 0;
for my $id (@failed) {
  if (++$shown > 20) {
    print STDERR "$me:   ... (" . (@failed - 20) . " more)\n";
    last;
  }
  my $what;
  if (exists $lost{$id}) {
    $what = $lost{$id};
  } else {
    my $c = $status{$id};
    $what = "exit code $c";
    $what .= " (killed by signal " . ($c - 128) . ($c == 143 ? ", SIGTERM: cancelled or time limit?" : "") . ")"
      if $c > 128 && $c < 160;
  }
  my $label = defined $var ? "task $id ($var=$id, SLURM job " . task_name($id) . ")" : "SLURM job $jobid";
  print STDERR "$me:   $label: $what; log: " . subst($log_template, $id) . "\n";
}
exit(1);
